"""pictures.py on PNGs: the EXIF thumbnail of an eXIf chunk is rebuilt, not zeroed in place."""

import io
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin, TiffImagePlugin

from conftest import jpeg_bytes, srgb_icc
from pii_blur import pictures

XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:GPano="http://ns.google.com/photos/1.0/panorama/" GPano:ProjectionType="equirectangular">
<dc:title><rdf:Alt><rdf:li xml:lang="x-default">street</rdf:li></rdf:Alt></dc:title>
</rdf:Description></rdf:RDF></x:xmpmeta>"""


def camera_exif() -> Image.Exif:
    """IFD0 with camera and resolution tags and a GPS IFD: every tag exiftool would otherwise add as mandatory."""
    exif = Image.Exif()
    exif.update({0x010F: "Canon", 0x0110: "EOS R5", 0x011A: 72.0, 0x011B: 72.0, 0x0128: 2, 0x0213: 1})
    exif.get_ifd(0x8825).update({0: b"\x02\x03\x00\x00", 1: "S", 2: (10.0, 30.0, 0.0)})
    return exif


def exif_with_thumbnail(exif: Image.Exif, thumbnail: bytes) -> bytes:
    """`exif` as a PNG eXIf payload (bare TIFF structure), with an IFD1 holding the JPEG `thumbnail`."""
    tiff = bytearray(exif.tobytes()[6:])
    order = "<" if tiff[:2] == b"II" else ">"
    ifd0 = struct.unpack_from(order + "I", tiff, 4)[0]
    link = ifd0 + 2 + 12 * struct.unpack_from(order + "H", tiff, ifd0)[0]
    tiff += bytes(len(tiff) % 2)
    ifd1 = TiffImagePlugin.ImageFileDirectory_v2(ifh=bytes(tiff[:8]))
    ifd1.update({0x0103: 6, 0x011A: 72.0, 0x011B: 72.0, 0x0128: 2, 0x0201: 0, 0x0202: len(thumbnail)})
    start = len(tiff)
    ifd1[0x0201] = start + len(ifd1.tobytes(start))   # the thumbnail follows IFD1 and its values
    struct.pack_into(order + "I", tiff, link, start)
    return bytes(tiff) + ifd1.tobytes(start) + thumbnail


def with_chunks(png: bytes, *chunks: bytes) -> bytes:
    """`png` with `chunks` inserted right after IHDR."""
    ihdr_end = 8 + 25
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:]


def png_with_metadata(rgb: np.ndarray, thumbnail: bytes) -> bytes:
    """An 8-bit RGB PNG with iCCP, an XMP iTXt and an eXIf carrying GPS and `thumbnail`."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", icc_profile=srgb_icc(), pnginfo=info)
    return with_chunks(buffer.getvalue(), pictures.png_chunk(b"eXIf", exif_with_thumbnail(camera_exif(), thumbnail)))


def scan_data(jpeg_bytes: bytes) -> bytes:
    """The entropy-coded data of a JPEG: what differs between two thumbnails of one encoder."""
    return jpeg_bytes[jpeg_bytes.index(b"\xff\xda"):-2]


def holds_any_of(data: bytes, picture: bytes, piece: int = 32) -> bool:
    """True if any `piece`-byte run of `picture`'s entropy-coded data is in `data`."""
    coded = scan_data(picture)
    return any(coded[i:i + piece] in data for i in range(0, len(coded) - piece, piece))


def exiftool_thumbnail(data: bytes, tmp_path) -> bytes:
    path = tmp_path / "probe.png"
    path.write_bytes(data)
    return subprocess.run(["exiftool", "-b", "-ThumbnailImage", str(path)], check=True, capture_output=True).stdout


def image_data(png: bytes) -> list[bytes]:
    return [payload for kind, payload, _start, _end in pictures.png_chunks(png) if kind == b"IDAT"]


def assert_valid_png(data: bytes) -> None:
    Image.open(io.BytesIO(data)).verify()
    for kind, payload, start, end in pictures.png_chunks(data):
        assert data[end - 4:end] == struct.pack(">I", zlib.crc32(kind + payload)), kind


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
