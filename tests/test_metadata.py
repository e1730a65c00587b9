import io
import json
import subprocess

import numpy as np
from PIL import Image

from conftest import ASTRONAUT_FACE_BOX, high_frequency_energy
from pii_blur import anonymize, imageio
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
