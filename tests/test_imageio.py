import io

import numpy as np
import pytest
from PIL import Image

from conftest import jpeg_bytes
from pii_blur import imageio


def test_sniff_by_content_not_name(astronaut):
    assert imageio.sniff_format(jpeg_bytes(astronaut)[:32]) == "jpeg"
    assert imageio.sniff_format(b"hello, I am a text file") is None
    assert imageio.sniff_format(b"") is None
    assert imageio.sniff_format(b"\x00\x00\x00\x18ftypheic\x00\x00") == "heic"
    assert imageio.sniff_format(b"\x00\x00\x00\x18ftypisom\x00\x00") is None  # an mp4


@pytest.mark.parametrize("cut", [100, 2000, 20000])
def test_truncated_jpeg_is_an_error(astronaut, cut):
    with pytest.raises(imageio.ImageError, match="truncated|corrupt"):
        imageio.decode(jpeg_bytes(astronaut)[:cut])


def test_unsupported_image_format_is_an_error(astronaut):
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, "GIF")
    with pytest.raises(imageio.ImageError, match="unsupported image format: gif"):
        imageio.decode(buffer.getvalue())


def test_huge_declared_size_is_refused(monkeypatch, astronaut):
    monkeypatch.setattr(imageio, "MAX_PIXELS", 1000)
    with pytest.raises(imageio.ImageError, match="too large"):
        imageio.decode(jpeg_bytes(astronaut))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_lossless_formats_round_trip_exactly(astronaut, fmt):
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    image = imageio.decode(buffer.getvalue())
    again = imageio.decode(imageio.encode(image, image.pixels))
    assert again.format == fmt.lower()
    assert np.array_equal(again.pixels, astronaut)


def test_sixteen_bit_png_stays_sixteen_bit():
    pixels = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    image = imageio.decode(buffer.getvalue())
    assert image.pixels.dtype == np.uint16
    assert np.array_equal(imageio.decode(imageio.encode(image, image.pixels)).pixels, pixels)


def test_jpeg_reencode_keeps_quantisation_tables(astronaut):
    source = jpeg_bytes(astronaut, quality=75)
    image = imageio.decode(source)
    again = Image.open(io.BytesIO(imageio.encode(image, image.pixels)))
    assert again.quantization == Image.open(io.BytesIO(source)).quantization


def test_exif_orientation_is_read(astronaut):
    exif = Image.Exif()
    exif[imageio.EXIF_ORIENTATION_TAG] = 6
    image = imageio.decode(jpeg_bytes(astronaut, exif=exif.tobytes()))
    assert image.orientation == 6
