import io
import json
import re
import subprocess

import numpy as np
import pytest
from PIL import Image, ImageCms

from conftest import ASTRONAUT_FACE_BOX, high_frequency_energy
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


@pytest.mark.parametrize("written, copied", [
    ([], False),                                          # pixels only: nothing for exiftool to copy
    (["-XMP-dc:Title=street"], True),                     # iTXt XMP
    (["-GPSLatitude=10.5", "-GPSLatitudeRef=S"], True),   # eXIf
    ("icc", True),                                        # iCCP
])
def test_only_a_png_without_copied_metadata_skips_exiftool(tmp_path, astronaut, written, copied):
    source = tmp_path / "astronaut.png"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() if written == "icc" else None
    Image.fromarray(astronaut[:64, :64]).save(source, icc_profile=profile)
    written = [] if written == "icc" else written
    if written:
        subprocess.run(["exiftool", "-q", "-q", "-overwrite_original", *written, str(source)], check=True)
    assert metadata.nothing_to_copy(source.read_bytes(), ".png") == (not copied)
    target = io.BytesIO()
    Image.fromarray(astronaut[:64, :64] // 2).save(target, "PNG")
    with MetadataWriter() as writer:
        restored = writer.restore(source.read_bytes(), target.getvalue(), ".png", None)
    assert (restored == target.getvalue()) == (not copied)
    assert not metadata.nothing_to_copy(b"\x89PNG\r\n\x1a\n" + b"\0\0\0\x0dIHDR", ".png")   # truncated
    assert not metadata.nothing_to_copy(source.read_bytes(), ".tif")


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
