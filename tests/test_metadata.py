import io
import json
import re
import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from conftest import (ASTRONAUT_FACE_BOX, assert_valid_png, camera_exif, high_frequency_energy, holds_any_of, jpeg_bytes,
                      png_with_metadata, srgb_icc, with_chunks)
from pii_blur import anonymize, imageio, metadata, pictures
from pii_blur.metadata import MetadataWriter
from pii_blur.types import Detection

# Fields that legitimately differ after re-encoding: file system facts, the
# encoder's own structure, and the regenerated thumbnail.
CHANGING = ("System:", "File:", "ExifTool:", "Composite:", "IFD1:ThumbnailOffset", "IFD1:ThumbnailLength",
            "IFD1:ThumbnailImage", "JFIF:", "Composite")


def exif_fields(path: str) -> dict:
    output = subprocess.run(["exiftool", "-j", "-a", "-G1", "-s", "-b", path], check=True,
                            capture_output=True, text=True).stdout
    fields = json.loads(output)[0]
    return {k: v for k, v in fields.items() if not k.startswith(CHANGING) and k != "SourceFile"}


def blur_file(source_path: str, target_path: str, box=ASTRONAUT_FACE_BOX) -> bytes:
    data = open(source_path, "rb").read()
    with MetadataWriter() as writer:
        out = anonymize.render_blurred(imageio.decode(data), anonymize.Found([Detection("face", 0.9, box)], []), data,
                                       writer).data
    open(target_path, "wb").write(out)
    return out


def test_all_metadata_survives_field_by_field(tmp_path, astronaut_jpeg_with_metadata):
    target = str(tmp_path / "blurred.jpg")
    blur_file(astronaut_jpeg_with_metadata, target)
    before, after = exif_fields(astronaut_jpeg_with_metadata), exif_fields(target)
    for key in ("GPS:GPSLatitude", "GPS:GPSLongitude", "XMP-GPano:ProjectionType", "IPTC:Keywords",
                "ICC_Profile:ProfileDescription", "IFD0:Make", "ExifIFD:DateTimeOriginal"):
        assert key in before, key
    assert after == before


def test_exif_thumbnail_is_regenerated_from_blurred_pixels(tmp_path, astronaut_jpeg_with_metadata, face_detector):
    target = str(tmp_path / "blurred.jpg")
    blur_file(astronaut_jpeg_with_metadata, target)
    thumbnail = subprocess.run(["exiftool", "-b", "-ThumbnailImage", target], check=True, capture_output=True).stdout
    original = subprocess.run(["exiftool", "-b", "-ThumbnailImage", astronaut_jpeg_with_metadata],
                              check=True, capture_output=True).stdout
    assert thumbnail and thumbnail != original
    new, old = (np.asarray(Image.open(io.BytesIO(t)).convert("RGB").resize((512, 512))) for t in (thumbnail, original))
    # The face in the new thumbnail has lost the detail the old one had,
    # and the face detector, which finds it in the old thumbnail, does not.
    assert high_frequency_energy(new, ASTRONAUT_FACE_BOX) < 0.5 * high_frequency_energy(old, ASTRONAUT_FACE_BOX)
    faces = [[d for d in found if d.score >= face_detector.threshold] for found in face_detector.detect([old, new])]
    assert len(faces[0]) == 1 and faces[1] == []


def test_jpeg_is_patched_block_wise_and_keeps_every_segment(tmp_path, astronaut_jpeg_with_metadata):
    data = open(astronaut_jpeg_with_metadata, "rb").read()
    with MetadataWriter() as writer:
        found = anonymize.Found([Detection("face", 0.9, ASTRONAUT_FACE_BOX)], [])
        rendered = anonymize.render_blurred(imageio.decode(data), found, data, writer)
    assert rendered.encoding == "jpeg-dct-blocks"
    assert 0.9 < len(rendered.data) / len(data) < 1.03


def test_png_metadata_survives(tmp_path, astronaut):
    source = str(tmp_path / "astronaut.png")
    Image.fromarray(astronaut).save(source)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-GPano:ProjectionType=equirectangular",
                    "-GPSLatitude=10.5", "-GPSLatitudeRef=S", source], check=True)
    target = str(tmp_path / "blurred.png")
    blur_file(source, target)
    after = exif_fields(target)
    assert after["XMP-GPano:ProjectionType"] == "equirectangular"
    assert after["GPS:GPSLatitudeRef"] == "South"


def png(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", **options)
    return buffer.getvalue()


def png_written_by_exiftool(pixels: np.ndarray, folder, *args: str) -> bytes:
    path = folder / "written.png"
    path.write_bytes(png(pixels))
    subprocess.run(["exiftool", "-q", "-q", "-overwrite_original", *args, str(path)], check=True)
    return path.read_bytes()


def exif_with_a_preview(pixels: np.ndarray) -> Image.Exif:
    exif = camera_exif()
    exif.get_ifd(0x8769)[0x927C] = jpeg_bytes(pixels)   # a maker note holding a preview
    return exif


@pytest.mark.parametrize("make_source, path", [
    (lambda pixels, folder: png(pixels), "nothing to copy"),
    (lambda pixels, folder: png_written_by_exiftool(pixels, folder, "-XMP-dc:Title=street"), "native"),
    (lambda pixels, folder: png_written_by_exiftool(pixels, folder, "-GPSLatitude=10.5", "-GPSLatitudeRef=S"),
     "native"),
    (lambda pixels, folder: png(pixels, icc_profile=srgb_icc()), "native"),
    (lambda pixels, folder: png_written_by_exiftool(pixels, folder, "-XMP-GCamera:MicroVideo=1"), "exiftool"),
    (lambda pixels, folder: png(pixels, exif=exif_with_a_preview(pixels)), "exiftool"),
    (lambda pixels, folder: png_with_raw_profile(pixels), "exiftool"),
], ids=["pixels only", "XMP iTXt", "eXIf", "iCCP", "XMP group left out", "EXIF preview", "raw profile"])
def test_which_pngs_skip_exiftool(tmp_path, astronaut, make_source, path):
    pixels = astronaut[:64, :64]
    source = make_source(pixels, tmp_path)
    target = halved(source)
    copied = metadata.copy_png_metadata(source, target, None)
    assert (copied is None) == (path == "exiftool")
    assert (copied == target) == (path == "nothing to copy")
    assert metadata.copy_png_metadata(b"\x89PNG\r\n\x1a\n" + b"\0\0\0\x0dIHDR", target, None) is None   # truncated
    assert metadata.copy_png_metadata(jpeg_bytes(pixels), target, None) is None


def imagemagick_raw_profile(app1_exif: bytes) -> str:
    """EXIF as ImageMagick stores it in PNG text: name, length, then hex in lines of 72 digits."""
    digits = app1_exif.hex()
    lines = "\n".join(digits[i:i + 72] for i in range(0, len(digits), 72))
    return f"\nexif\n{len(app1_exif):8d}\n{lines}\n"


def rgba16_png_with_metadata(rgb: np.ndarray, thumbnail: bytes) -> bytes:
    """A 16-bit RGBA PNG from OpenCV with the metadata chunks of png_with_metadata."""
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]).astype(np.uint16) * 257
    with_metadata = png_with_metadata(rgb, thumbnail)
    metadata_chunks = [with_metadata[start:end] for kind, _payload, start, end in pictures.png_chunks(with_metadata)
                       if kind in (b"iCCP", b"iTXt", b"eXIf")]
    return with_chunks(cv2.imencode(".png", rgba)[1].tobytes(), *metadata_chunks)


def png_with_raw_profile(rgb: np.ndarray) -> bytes:
    """A PNG whose EXIF (camera_exif) is held the ImageMagick way, in a 'Raw profile type exif' zTXt."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", imagemagick_raw_profile(camera_exif().tobytes()), zip=True)
    return png(rgb, pnginfo=info)


def halved(source: bytes) -> bytes:
    """The source's pixels halved, as the metadata-free PNG that render() hands to restore()."""
    decoded = imageio.decode(source)
    return imageio.encode(decoded, decoded.pixels // 2)


def copied_tags(data: bytes, tmp_path, name: str) -> dict:
    """EXIF, XMP and ICC tags, less the thumbnail's place and the XMP writer's name."""
    path = tmp_path / name
    path.write_bytes(data)
    output = subprocess.run(["exiftool", "-j", "-G1", "-EXIF:all", "-XMP:all", "-ICC_Profile:all", str(path)],
                            check=True, capture_output=True, text=True).stdout
    ignored = ("SourceFile", "IFD1:ThumbnailOffset", "IFD1:ThumbnailLength", "XMP-x:XMPToolkit")
    return {key: value for key, value in json.loads(output)[0].items() if key not in ignored}


@pytest.mark.parametrize("make_source", [png_with_metadata, rgba16_png_with_metadata])
def test_png_metadata_is_copied_without_exiftool_as_exiftool_would(tmp_path, astronaut, monkeypatch, make_source):
    old_thumbnail, thumbnail = jpeg_bytes(astronaut[::4, ::4]), jpeg_bytes(astronaut[::4, ::4] // 2, 70)
    source = make_source(astronaut, old_thumbnail)
    target = halved(source)
    with MetadataWriter() as writer:
        native = writer.restore(source, target, ".png", thumbnail)
        assert not writer._tool.running   # the exiftool path would have started it
    with monkeypatch.context() as patch, MetadataWriter() as exiftool_writer:
        patch.setattr(metadata, "copy_png_metadata", lambda *args: None)
        by_exiftool = exiftool_writer.restore(source, target, ".png", thumbnail)
    tags = copied_tags(native, tmp_path, "native.png")
    for key in ("GPS:GPSLatitude", "IFD0:Make", "XMP-GPano:ProjectionType", "XMP-dc:Title",
                "ICC_Profile:ProfileDescription", "IFD1:ThumbnailImage"):
        assert key in tags, key
    assert tags == copied_tags(by_exiftool, tmp_path, "by_exiftool.png")

    out, _actions = pictures.clean(native, thumbnail)
    pictures.verify(out, thumbnail)
    assert thumbnail in out and not holds_any_of(out, old_thumbnail)
    for data in (native, out):
        assert_valid_png(data)
        decoded_out = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(decoded_out, cv2.imdecode(np.frombuffer(target, np.uint8), cv2.IMREAD_UNCHANGED))
        kinds = [kind for kind, _payload, _start, _end in pictures.png_chunks(data)]
        assert kinds.index(b"IHDR") < kinds.index(b"iCCP") < kinds.index(b"IDAT")
        assert kinds.index(b"eXIf") < kinds.index(b"IDAT") and kinds.index(b"iTXt") < kinds.index(b"IDAT")


def test_png_with_an_imagemagick_raw_profile_goes_through_exiftool(tmp_path, astronaut):
    source = png_with_raw_profile(astronaut)
    target = halved(source)
    assert metadata.copy_png_metadata(source, target, None) is None
    with MetadataWriter() as writer:
        restored = writer.restore(source, target, ".png", None)
    tags = copied_tags(restored, tmp_path, "restored.png")
    assert tags["IFD0:Make"] == "Canon" and tags["GPS:GPSLatitudeRef"] == "South"
    assert b"Raw profile type" not in restored


def test_every_picture_tag_named_is_one_exiftool_knows():
    """metadata.EMBEDDED_PICTURE_TAGS once named tags exiftool does not have
    (XMP-GImage:Data), so nothing was excluded; check the names against `exiftool -listx`."""
    listing = subprocess.run(["exiftool", "-listx"], check=True, capture_output=True, text=True).stdout
    tables = set(re.findall(r"<table name='([^']+)'", listing))
    names = set(re.findall(r"<tag id='[^']*' name='([^']+)'", listing))
    for tag in metadata.EMBEDDED_PICTURE_TAGS:
        group, name = tag.split(":")
        if group.startswith("XMP-"):
            assert f"XMP::{group[4:]}" in tables, tag
        assert name == "all" or name in names, tag


@pytest.mark.parametrize("extension", [".png", ".tif", ".jpg"])
def test_pictures_written_with_exiftools_own_tag_names_do_not_survive(tmp_path, astronaut, extension):
    """Case 1 of the hostile report with exiftool's real names: a Google
    portrait original, a depth map and its confidence, an XMP thumbnail and
    an EXIF thumbnail of the unblurred face, through the re-encode path
    (PNG, TIFF) and the JPEG block path."""
    face = tmp_path / "face.jpg"
    Image.fromarray(astronaut[40:200, 160:290]).save(face, quality=90)
    depth = tmp_path / "depth.png"
    Image.fromarray(astronaut[40:200, 160:290, 0]).save(depth)
    source = tmp_path / f"in{extension}"
    Image.fromarray(astronaut).save(source)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-GImage:ImageMimeType=image/jpeg",
                    f"-XMP-GImage:ImageData<={face}", f"-XMP-GDepth:DepthImage<={depth}",
                    f"-XMP-GDepth:Confidence<={depth}", f"-XMP-xmp:ThumbnailImage<={face}",
                    "-XMP-GPano:ProjectionType=equirectangular", "-EXIF:Artist=tester", str(source)], check=True)
    if extension == ".jpg":
        subprocess.run(["exiftool", "-q", "-overwrite_original", f"-ThumbnailImage<={face}", str(source)], check=True)
    before = subprocess.run(["exiftool", "-a", "-G1", "-s", str(source)], capture_output=True, text=True).stdout
    assert "ImageData" in before and "DepthImage" in before and "ThumbnailImage" in before
    out = tmp_path / f"out{extension}"
    out.write_bytes(blur_file(str(source), str(out)))
    for tag in ("XMP-GImage:ImageData", "XMP-GDepth:DepthImage", "XMP-GDepth:Confidence", "XMP-xmp:ThumbnailImage"):
        extracted = subprocess.run(["exiftool", "-b", f"-{tag}", str(out)], capture_output=True).stdout
        assert not extracted.strip(), tag
    after = subprocess.run(["exiftool", "-a", "-G1", "-s", str(out)], capture_output=True, text=True).stdout
    assert "equirectangular" in after and "tester" in after        # allowed metadata survives
    assert face.read_bytes()[100:400] not in out.read_bytes()
    leftovers = [p for p in pictures.find(out.read_bytes())
                 if not pictures.shows_the_photo(p.data, imageio.decode(out.read_bytes()).rgb8())]
    assert leftovers == []
