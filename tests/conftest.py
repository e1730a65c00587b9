"""Shared fixtures: real images built from scikit-image's photos, with real metadata."""

from __future__ import annotations

import io
import struct
import subprocess
import zlib

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageCms, PngImagePlugin, TiffImagePlugin

from pii_blur import pictures
from pii_blur.models import DetectorConfig, create_detector

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes (CI runs it; skip locally with -m 'not slow')")


# Where CenterFace finds the astronaut's face in skimage.data.astronaut() (512x512).
ASTRONAUT_FACE_BOX = (175, 54, 275, 180)


def jpeg_bytes(rgb: np.ndarray, quality: int = 92, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, **options)
    return buffer.getvalue()


def render_car_with_plate(text: str = "AB12 CDE") -> np.ndarray:
    """720x480 RGB: a flat-coloured car with a white plate carrying `text` at about (290..430, 300..340)."""
    image = np.zeros((480, 720, 3), np.uint8)
    image[:] = (90, 110, 130)
    cv2.rectangle(image, (120, 120), (600, 400), (150, 30, 30), -1)
    cv2.rectangle(image, (170, 140), (550, 240), (40, 40, 50), -1)
    for x in (200, 520):
        cv2.circle(image, (x, 400), 50, (20, 20, 20), -1)
    cv2.rectangle(image, (290, 300), (430, 340), (245, 245, 245), -1)
    cv2.rectangle(image, (290, 300), (430, 340), (0, 0, 0), 2)
    cv2.putText(image, text, (298, 331), cv2.FONT_HERSHEY_DUPLEX, 0.9, (10, 10, 10), 2, cv2.LINE_AA)
    return image


def add_metadata(path: str, thumbnail_rgb: np.ndarray | None = None) -> None:
    """Write EXIF (camera, date, GPS), XMP GPano, IPTC and optionally an EXIF thumbnail with exiftool."""
    args = ["exiftool", "-q", "-overwrite_original", "-Make=GoPro", "-Model=MAX",
            "-DateTimeOriginal=2024:05:06 07:08:09", "-GPSLatitude=51.4545", "-GPSLatitudeRef=N",
            "-GPSLongitude=2.5879", "-GPSLongitudeRef=W", "-GPSAltitude=12.5",
            "-XMP-GPano:ProjectionType=equirectangular", "-XMP-GPano:UsePanoramaViewer=True",
            "-XMP-dc:Creator=pii-blur tests", "-IPTC:Keywords=street", "-IPTC:By-line=tester"]
    if thumbnail_rgb is not None:
        thumb_path = path + ".thumb.jpg"
        Image.fromarray(thumbnail_rgb).resize((160, 160)).save(thumb_path, quality=85)
        args.append(f"-ThumbnailImage<={thumb_path}")
    subprocess.run(args + [path], check=True)


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="session")
def face_detector():
    return create_detector("onnx-centerface", DetectorConfig(min_probability=0.4, threads=1))


@pytest.fixture(scope="session")
def plate_detector():
    return create_detector("onnx-ppocr-plate", DetectorConfig(min_probability=0.4, threads=1))


@pytest.fixture
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture
def astronaut_jpeg_with_metadata(tmp_path, astronaut) -> str:
    """A JPEG of the astronaut with ICC profile, EXIF + GPS, XMP GPano, IPTC and an EXIF thumbnail."""
    path = str(tmp_path / "astronaut.jpg")
    Image.fromarray(astronaut).save(path, quality=92, icc_profile=srgb_icc())
    add_metadata(path, thumbnail_rgb=astronaut)
    return path


def high_frequency_energy(rgb: np.ndarray, box) -> float:
    """Mean absolute Laplacian of the grey image inside box [x1, y1, x2, y2]."""
    x1, y1, x2, y2 = (int(v) for v in box)
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


# PNG metadata (pii_blur.pictures, pii_blur.metadata)

STREET_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
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
    info.add_itxt("XML:com.adobe.xmp", STREET_XMP)
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


def assert_valid_png(data: bytes) -> None:
    Image.open(io.BytesIO(data)).verify()
    for kind, payload, start, end in pictures.png_chunks(data):
        assert data[end - 4:end] == struct.pack(">I", zlib.crc32(kind + payload)), kind
