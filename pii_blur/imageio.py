"""Sniffing, decoding and encoding images. Pure Pillow/numpy, no Beam.

Pixels are handled as stored in the file; EXIF orientation is only applied to
the copy that goes to the detectors (see geometry.py).
"""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import warnings
from typing import Optional

import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin, UnidentifiedImageError

# Refuse truncated files instead of silently padding them with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Formats we can blur and write back in the same format.
SUPPORTED_FORMATS = ("jpeg", "png", "tiff", "webp")
MAX_PIXELS = 300_000_000  # about 24k x 12k; larger inputs fail rather than exhaust memory
EXIF_ORIENTATION_TAG = 0x0112

# Pillow's own bomb check (a warning above 89 Mpx, an error above twice that)
# would refuse images our limit allows, with a misleading reason. decode()
# checks the header size itself; Pillow's check is only kept as a backstop.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_PIXELS)

# Sizes of the DIB header that follows a BMP file header: "BM" alone also
# starts plenty of text files ("BMW ...").
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"8BPS", "psd"),
    (b"\xff\x0a", "jxl"),
    (b"\x00\x00\x00\x0cJXL ", "jxl"),
)


class ImageError(Exception):
    """An input that cannot be processed safely; the message is the report reason."""


def sniff_format(head: bytes) -> Optional[str]:
    """Image format from the first bytes of a file, or None if it is not an image.

    Looks only at content (magic bytes), never at the file name.
    """
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"heim", b"heis"):
            return "heic"
        if brand in (b"avif", b"avis"):
            return "avif"
        return None  # mp4/mov and friends: not images
    for magic, name in _MAGIC:
        if head.startswith(magic):
            if name == "bmp" and not _looks_like_bmp(head):
                continue
            return name
    return None


def _looks_like_bmp(head: bytes) -> bool:
    """A BMP file header: reserved bytes zero and a known DIB header size."""
    return len(head) >= 18 and head[6:10] == b"\0\0\0\0" and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES


@dataclasses.dataclass
class DecodedImage:
    """An image decoded from bytes.

    pixels: HxW (grey) or HxWxC array as stored, C in {3: RGB, 4: RGBA},
        dtype uint8 or uint16.
    mode: the Pillow mode that `pixels` round-trips through.
    orientation: EXIF orientation 1..8 (1 when absent).
    source: the Pillow image, kept for encoder settings (JPEG tables etc.).
    """

    format: str
    pixels: np.ndarray
    mode: str
    orientation: int
    source: Image.Image
    webp_lossless: bool = False

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    def rgb8(self) -> np.ndarray:
        """HxWx3 uint8 RGB copy of the stored pixels, for the detectors."""
        return to_rgb8(self.pixels)


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB from grey, RGB or RGBA pixels of uint8 or uint16."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


# Modes we blur directly; others are converted to the nearest one first.
_NATIVE_MODES = {"L": "L", "RGB": "RGB", "RGBA": "RGBA", "I;16": "I;16"}
_CONVERTED_MODES = {"1": "L", "P": "RGBA", "PA": "RGBA", "LA": "RGBA", "CMYK": "RGB",
                    "YCbCr": "RGB", "I": "I;16", "I;16B": "I;16", "I;16L": "I;16", "F": "L"}


def decode(data: bytes, max_pixels: int | None = None) -> DecodedImage:
    """Decode and fully validate an image.

    max_pixels: refuse images with more pixels than this (default: MAX_PIXELS
        at call time), from the size in the header, before any pixel is decoded.

    Raises:
        ImageError: not an image, unsupported format, too large, corrupt or truncated.
    """
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    fmt = sniff_format(data[:32])
    if fmt is None:
        raise ImageError("not an image")
    if fmt not in SUPPORTED_FORMATS:
        raise ImageError(f"unsupported image format: {fmt}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # checked below
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limit:
                raise ImageError(f"image too large: {width}x{height} pixels (limit {limit})")
            if width < 1 or height < 1:
                raise ImageError(f"corrupt {fmt}: {width}x{height} pixels")
            image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as error:   # Pillow's backstop, far above `limit`
        raise ImageError(f"image too large: more than {limit} pixels ({error})") from error
    except UnidentifiedImageError as error:   # its message names a BytesIO object, no use to anyone
        raise ImageError(f"corrupt or truncated {fmt}: the header cannot be read") from error
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
        raise ImageError(f"corrupt or truncated {fmt}: {error}") from error
    # A camera JPEG with MPF previews opens as several frames; the primary
    # image is the photo (previews are never copied to the output). Other
    # multi-frame files (TIFF pages, animated WebP) would keep unblurred frames.
    if fmt != "jpeg" and getattr(image, "n_frames", 1) > 1:
        raise ImageError(f"multi-frame {fmt} is not supported")
    mode = _NATIVE_MODES.get(image.mode) or _CONVERTED_MODES.get(image.mode)
    if mode is None:
        raise ImageError(f"unsupported pixel mode {image.mode}")
    converted = image if mode == image.mode else image.convert(mode if mode != "I;16" else "I")
    pixels = np.array(converted)
    if mode == "I;16":
        pixels = np.clip(pixels, 0, 65535).astype(np.uint16)
    orientation = _orientation(image)
    return DecodedImage(fmt, pixels, mode, int(orientation), image,
                        webp_lossless=fmt == "webp" and _webp_is_lossless(data))


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8; 1 when absent, out of range or unreadable.

    Unreadable EXIF is treated as no EXIF, as viewers do: they show the pixels
    as stored, so detection must look at them that way too.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # Pillow warns on every corrupt IFD
            value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error, RecursionError):
        return 1
    try:
        return int(value) if value in range(1, 9) else 1
    except TypeError:   # an unhashable or odd tag type (e.g. a tuple of them)
        return 1


_GPANO_PROJECTION = re.compile(rb"GPano:ProjectionType(?:\s*=\s*[\"']|>)\s*([A-Za-z_-]+)")
XMP_SEARCH_BYTES = 1 << 20  # XMP sits in the file's first segments


def xmp_projection(data: bytes) -> Optional[str]:
    """XMP GPano ProjectionType (e.g. 'equirectangular'), lower-cased, or None."""
    match = _GPANO_PROJECTION.search(data[:XMP_SEARCH_BYTES])
    return match.group(1).decode("ascii").lower() if match else None


def _webp_is_lossless(data: bytes) -> bool:
    """True if the first image chunk of a WebP file is VP8L (lossless)."""
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4], int.from_bytes(data[offset + 4:offset + 8], "little")
        if chunk in (b"VP8 ", b"VP8L"):
            return chunk == b"VP8L"
        offset += 8 + size + (size & 1)
    return False


def encode(image: DecodedImage, pixels: np.ndarray) -> bytes:
    """Encode `pixels` (same shape and dtype as image.pixels) in the input's format.

    JPEG keeps the source's quantisation tables and chroma subsampling, so the
    quality matches the original; PNG and TIFF are lossless; WebP is written
    lossless when the source was, else at quality 95. No metadata is written:
    metadata.py restores it from the source file.
    """
    out = Image.fromarray(np.ascontiguousarray(pixels.astype(image.pixels.dtype, copy=False)))
    buffer = io.BytesIO()
    source = image.source
    if image.format == "jpeg":
        if out.mode == "RGBA":
            out = out.convert("RGB")
        options = {"quality": 95}
        if source.format == "JPEG" and getattr(source, "quantization", None):
            options = {"qtables": source.quantization}
            sampling = JpegImagePlugin.get_sampling(source)
            if sampling >= 0:
                options["subsampling"] = sampling
        out.save(buffer, "JPEG", progressive=bool(source.info.get("progressive")),
                 optimize=True, **options)
    elif image.format == "png":
        out.save(buffer, "PNG", compress_level=6)
    elif image.format == "tiff":
        compression = source.info.get("compression", "raw")
        if compression not in ("raw", "tiff_lzw", "tiff_adobe_deflate", "packbits"):
            compression = "tiff_adobe_deflate"  # never re-encode lossy inside a TIFF
        out.save(buffer, "TIFF", compression=compression)
    elif image.format == "webp":
        if image.webp_lossless:
            out.save(buffer, "WEBP", lossless=True, quality=100, method=4)
        else:
            out.save(buffer, "WEBP", quality=95, method=4)
    else:
        raise ImageError(f"cannot encode {image.format}")
    return buffer.getvalue()


def encode_thumbnail(pixels_rgb: np.ndarray, max_side: int = 160) -> bytes:
    """A small baseline JPEG of HxWx3 uint8 RGB pixels, for the EXIF thumbnail."""
    thumb = Image.fromarray(pixels_rgb, mode="RGB")
    thumb.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()
