"""pictures.py on PNGs: the EXIF thumbnail of an eXIf chunk is rebuilt, not zeroed in place."""

import subprocess

import pytest

from conftest import assert_valid_png, camera_exif, exif_with_thumbnail, holds_any_of, jpeg_bytes, png_with_metadata
from pii_blur import pictures


def exiftool_thumbnail(data: bytes, tmp_path) -> bytes:
    path = tmp_path / "probe.png"
    path.write_bytes(data)
    return subprocess.run(["exiftool", "-b", "-ThumbnailImage", str(path)], check=True, capture_output=True).stdout


def image_data(png: bytes) -> list[bytes]:
    return [payload for kind, payload, _start, _end in pictures.png_chunks(png) if kind == b"IDAT"]


def test_clean_rebuilds_a_png_exif_thumbnail_from_the_output(tmp_path, astronaut):
    old, new = jpeg_bytes(astronaut[::4, ::4]), jpeg_bytes(astronaut[::4, ::4] // 2, 70)
    source = png_with_metadata(astronaut, old)
    out, actions = pictures.clean(source, new)
    assert "EXIF thumbnail rebuilt from the output" in actions
    assert exiftool_thumbnail(out, tmp_path) == new
    assert not holds_any_of(out, old)
    pictures.verify(out, new)
    assert_valid_png(out)
    assert image_data(out) == image_data(source)


def test_a_thumbnail_too_large_for_the_old_ones_place_is_appended(tmp_path, astronaut):
    old, new = jpeg_bytes(astronaut[::16, ::16], 30), jpeg_bytes(astronaut[::4, ::4], 95)
    assert len(new) > len(old)
    out, _actions = pictures.clean(png_with_metadata(astronaut, old), new)
    assert exiftool_thumbnail(out, tmp_path) == new
    assert not holds_any_of(out, old)
    pictures.verify(out, new)


def test_clean_removes_a_png_exif_thumbnail_when_given_none(tmp_path, astronaut):
    old = jpeg_bytes(astronaut[::4, ::4])
    out, actions = pictures.clean(png_with_metadata(astronaut, old), None)
    assert "EXIF thumbnail removed" in actions
    assert exiftool_thumbnail(out, tmp_path) == b""
    assert not holds_any_of(out, old)
    pictures.verify(out, None)
    assert_valid_png(out)


def test_png_exif_with_thumbnail_lists_the_other_pictures_it_holds(astronaut):
    old, new = jpeg_bytes(astronaut[::4, ::4]), jpeg_bytes(astronaut[::8, ::8])
    hidden = jpeg_bytes(astronaut[40:200, 160:290])
    exif = camera_exif()
    exif.get_ifd(0x8769)[0x927C] = hidden   # a maker note holding a preview
    payload, others = pictures.png_exif_with_thumbnail(exif_with_thumbnail(exif, old), new)
    assert new in payload and not holds_any_of(payload, old)
    assert [picture.data for picture in others] == [hidden]


def test_png_exif_with_thumbnail_refuses_exif_it_cannot_read():
    with pytest.raises(pictures.PictureError):
        pictures.png_exif_with_thumbnail(b"Exif\x00\x00II*\x00\x08\x00\x00\x00", None)   # a JPEG APP1 header
