"""Sniffing, decoding and encoding images. Pillow, OpenCV and numpy, no Beam.

Pixels are handled as stored in the file; EXIF orientation is only applied to
the copy that goes to the detectors (see geometry.py). They keep their depth
and colour space: 16-bit PNG and TIFF stay 16-bit (OpenCV reads and writes the
colour ones, which Pillow can only read as 8-bit), and CMYK JPEG and TIFF stay
CMYK, so the ICC profile that metadata.py copies back still describes them.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import re
import struct
import warnings
import zlib
from typing import Optional

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageFile, JpegImagePlugin, UnidentifiedImageError

from pii_blur import pictures
from pii_blur.geometry import to_upright

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

    pixels: HxW (grey) or HxWxC array as stored, C in {3: RGB, 4: RGBA or
        CMYK}, dtype uint8 or uint16 (16-bit grey, RGB and RGBA).
    mode: the Pillow mode that `pixels` round-trips through: L, RGB, RGBA,
        CMYK (ink amounts, 0 = none, as Pillow gives them) or I;16; RGB;16 and
        RGBA;16 for 16-bit colour, which Pillow has no mode for.
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

    def rgb8(self, pixels: Optional[np.ndarray] = None) -> np.ndarray:
        """HxWx3 uint8 RGB copy of the stored pixels (or of `pixels`, laid out
        like them, e.g. blurred), for the detectors and thumbnails.

        CMYK goes through the embedded ICC profile to sRGB, as a colour-managed
        viewer shows it.
        """
        pixels = self.pixels if pixels is None else pixels
        if self.mode == "CMYK":
            return cmyk_to_rgb8(pixels, self.source.info.get("icc_profile"))
        return to_rgb8(pixels)


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB from grey, RGB or RGBA pixels of uint8 or uint16 (not CMYK: see cmyk_to_rgb8)."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


_SRGB = ImageCms.createProfile("sRGB")


def cmyk_to_rgb8(pixels: np.ndarray, icc_profile: Optional[bytes]) -> np.ndarray:
    """HxWx3 uint8 sRGB from HxWx4 uint8 CMYK ink amounts (0 = no ink).

    Through `icc_profile` (perceptual intent) when it is a usable CMYK
    profile; else, as for files without one, by Pillow's naive formula.
    """
    image = Image.frombuffer("CMYK", (pixels.shape[1], pixels.shape[0]), np.ascontiguousarray(pixels).tobytes())
    transform = _cmyk_to_srgb(icc_profile) if icc_profile else None
    return np.asarray(transform.apply(image) if transform else image.convert("RGB"))


@functools.lru_cache(maxsize=8)
def _cmyk_to_srgb(icc_profile: bytes) -> Optional[ImageCms.ImageCmsTransform]:
    """A CMYK -> sRGB transform through an embedded profile; None if it is not a usable CMYK profile."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        return ImageCms.buildTransform(profile, _SRGB, "CMYK", "RGB")   # perceptual intent
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):   # broken, or an RGB profile in a CMYK file
        return None


# Modes we blur directly (and CMYK, which only JPEG and TIFF hold); others
# are converted to the nearest one first.
_NATIVE_MODES = {"L": "L", "RGB": "RGB", "RGBA": "RGBA", "I;16": "I;16", "CMYK": "CMYK"}
_CONVERTED_MODES = {"1": "L", "P": "RGBA", "PA": "RGBA", "LA": "RGBA", "YCbCr": "RGB",
                    "I": "I;16", "I;16B": "I;16", "I;16L": "I;16", "F": "L"}


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
            # Pillow turns a TIFF upright as it loads it, and drops the tag.
            tiff_orientation = _orientation(image) if fmt == "tiff" else 1
            sixteen_bit_png = fmt == "png" and _is_sixteen_bit_colour(data, fmt, image)
            png_chunk_types = _sound_png_chunk_types(data) if sixteen_bit_png else None
            if png_chunk_types is None:
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
    if fmt == "tiff":
        orientation = tiff_orientation
    elif png_chunk_types is not None and "exif" not in image.info and b"eXIf" not in png_chunk_types:
        orientation = 1   # getexif would decode the pixels to look for an eXIf after the image data
    else:
        orientation = _orientation(image)
    if _is_sixteen_bit_colour(data, fmt, image):
        pixels = _decode_sixteen_bit_colour(data, fmt, image, orientation, loaded=png_chunk_types is None)
        mode = "RGB;16" if pixels.shape[2] == 3 else "RGBA;16"
    else:
        mode = _NATIVE_MODES.get(image.mode) or _CONVERTED_MODES.get(image.mode)
        if mode is None:
            raise ImageError(f"unsupported pixel mode {image.mode}")
        converted = image if mode == image.mode else image.convert(mode if mode != "I;16" else "I")
        pixels = np.array(converted)
        if mode == "I;16":
            pixels = np.clip(pixels, 0, 65535).astype(np.uint16)
        if _turned_upright_by_pillow(image, orientation):
            pixels = np.ascontiguousarray(to_upright(pixels, _INVERSE_ORIENTATION.get(orientation, orientation)))
    return DecodedImage(fmt, pixels, mode, int(orientation), image,
                        webp_lossless=fmt == "webp" and _webp_is_lossless(data))


# The EXIF orientation that undoes each one (the others undo themselves).
_INVERSE_ORIENTATION = {6: 8, 8: 6}


def _turned_upright_by_pillow(image: Image.Image, orientation: int) -> bool:
    """Whether Pillow applied a TIFF's `orientation` to the pixels while loading them.

    Pillow 12 does (and drops the Orientation tag); stored pixels are what is
    blurred and written back, under the tag that metadata.py copies.
    """
    return image.format == "TIFF" and orientation != 1 and _TIFF_ORIENTATION not in image.tag_v2


_PNG_BIT_DEPTH_OFFSET = 24   # in the IHDR chunk, which always comes first
_TIFF_BITS_PER_SAMPLE = 258
_TIFF_ORIENTATION = 0x0112


def _is_sixteen_bit_colour(data: bytes, fmt: str, image: Image.Image) -> bool:
    """A PNG or TIFF with 16 bits per sample and colour or alpha, which Pillow reduces to 8 bits.

    16-bit grey without alpha is not included: Pillow reads it exactly (I;16).
    """
    if image.mode not in ("RGB", "RGBA", "LA"):
        return False
    if fmt == "png":
        return len(data) > _PNG_BIT_DEPTH_OFFSET and data[_PNG_BIT_DEPTH_OFFSET] == 16
    if fmt == "tiff":
        bits = image.tag_v2.get(_TIFF_BITS_PER_SAMPLE, ())
        return bool(bits) and all(b == 16 for b in (bits if isinstance(bits, tuple) else (bits,)))
    return False


def _sound_png_chunk_types(data: bytes) -> Optional[list[bytes]]:
    """The chunk types of a PNG whose chunks are whole, CRCs right, from IHDR to a final IEND; else None.

    Such a 16-bit PNG is decoded by OpenCV alone, without Pillow's validating
    load first (which decodes every pixel again, to 8 bits: 0.35 s for the 43
    16-bit dev PNGs). A PNG that fails this is loaded by Pillow, which names
    what is wrong; libpng, inside OpenCV, would print it on stderr instead.
    """
    chunks = pictures.whole_png_chunks(data)
    if chunks is None or any(int.from_bytes(data[end - 4:end], "big") != zlib.crc32(payload, zlib.crc32(kind))
                             for kind, payload, _start, end in chunks):
        return None
    return [kind for kind, _payload, _start, _end in chunks]


def _decode_sixteen_bit_colour(data: bytes, fmt: str, image: Image.Image, orientation: int,
                               loaded: bool = True) -> np.ndarray:
    """HxWx3 RGB or HxWx4 RGBA uint16 pixels as stored, read with OpenCV.

    Grey with alpha comes back as RGBA. OpenCV applies a TIFF's Orientation
    tag whatever the flags, so it gets a copy with the tag set to 1.
    image: the file as Pillow opened it, loaded unless `loaded` is False (a sound
    PNG, see _sound_png_chunk_types); orientation: as read before loading.

    Raises:
        ImageError: OpenCV cannot read it, or reads something else than Pillow did.
    """
    if fmt == "tiff" and orientation != 1:
        data = _tiff_orientation_cleared(data)
    width, height = image.size
    if _turned_upright_by_pillow(image, orientation) and orientation > 4:
        width, height = height, width
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if (pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4)
            or pixels.shape[:2] != (height, width)):
        if not loaded:   # Pillow's reason, if it has one (a corrupt stream inside sound chunks)
            try:
                image.load()
            except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
                raise ImageError(f"corrupt or truncated {fmt}: {error}") from error
        raise ImageError(f"unsupported 16-bit {fmt}: OpenCV cannot read its pixels")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB if pixels.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)


def _tiff_orientation_cleared(data: bytes) -> bytes:
    """A copy of a TIFF whose first IFD's Orientation entry (a SHORT or LONG) says 1."""
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    count = struct.unpack_from(order + "H", data, ifd)[0]
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag == _TIFF_ORIENTATION and kind in (3, 4):
            patched = bytearray(data)
            struct.pack_into(order + ("H" if kind == 3 else "I"), patched, entry + 8, 1)
            return bytes(patched)
    return data


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


# zlib level of re-encoded 8-bit PNGs. Measured on the dev crowd PNGs made 8-bit,
# and a 3000 px astronaut: level 3 was 2.6-2.7x faster than 6 for 2-14 % more
# bytes, level 1 3.5-4.4x faster for 4-24 % more. zlib's Huffman-only strategy
# was faster still but made decoded JPEG photos 22 % bigger.
PNG_COMPRESS_LEVEL = 3
# OpenCV's settings for 16-bit PNGs: level 1, zlib's run-length strategy, every row
# Paeth-filtered. On the 43 dev crowd PNGs (400 px, 16-bit RGBA, noisy low bytes)
# 0.47 s and 23.7 MB against 0.96 s and 24.8 MB at level 1's defaults; on a 2000 px
# astronaut 1.4-2.0x faster, 2-5 % smaller when smooth or noisy and 9 % bigger when
# every sample is an 8-bit value times 257 (its low bytes repeat the high ones,
# which only full matching finds).
PNG16_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):   # OpenCV 4.12 and later; before, libpng chooses per row
    PNG16_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH]


def encode(image: DecodedImage, pixels: np.ndarray) -> bytes:
    """Encode `pixels` (same shape and dtype as image.pixels) in the input's format.

    JPEG keeps the source's quantisation tables and chroma subsampling, so the
    quality matches the original; PNG and TIFF are lossless, 16-bit ones stay
    16-bit; CMYK stays CMYK; WebP is written lossless when the source was,
    else at quality 95. No metadata is written: metadata.py restores it from
    the source file.
    """
    pixels = np.ascontiguousarray(pixels.astype(image.pixels.dtype, copy=False))
    if pixels.dtype == np.uint16 and image.format in ("png", "tiff"):
        return _encode_sixteen_bit(image, pixels)
    if image.mode == "CMYK":
        out = Image.frombuffer("CMYK", (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
    else:
        out = Image.fromarray(pixels)
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
        out.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif image.format == "tiff":
        out.save(buffer, "TIFF", compression=_tiff_compression(source))
    elif image.format == "webp":
        if image.webp_lossless:
            out.save(buffer, "WEBP", lossless=True, quality=100, method=4)
        else:
            out.save(buffer, "WEBP", quality=95, method=4)
    else:
        raise ImageError(f"cannot encode {image.format}")
    return buffer.getvalue()


# Pillow's names of the lossless TIFF compressions, and their TIFF codes for OpenCV.
_TIFF_COMPRESSIONS = {"raw": 1, "tiff_lzw": 5, "tiff_adobe_deflate": 8, "packbits": 32773}


def _tiff_compression(source: Image.Image) -> str:
    """The source's TIFF compression if lossless, else Deflate: never re-encode lossy inside a TIFF."""
    compression = source.info.get("compression", "raw")
    return compression if compression in _TIFF_COMPRESSIONS else "tiff_adobe_deflate"


def _encode_sixteen_bit(image: DecodedImage, pixels: np.ndarray) -> bytes:
    """PNG or TIFF of HxW grey, HxWx3 RGB or HxWx4 RGBA uint16 pixels, with OpenCV."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    if image.format == "png":
        ok, encoded = cv2.imencode(".png", pixels, PNG16_PARAMS)
    else:
        code = _TIFF_COMPRESSIONS[_tiff_compression(image.source)]
        ok, encoded = cv2.imencode(".tiff", pixels, [cv2.IMWRITE_TIFF_COMPRESSION, code])
    if not ok:
        raise ImageError(f"OpenCV could not encode a 16-bit {image.format}")
    if image.format == "tiff" and pixels.ndim == 3 and pixels.shape[2] == 4:
        extra = image.source.tag_v2.get(_TIFF_EXTRA_SAMPLES, (_UNASSOCIATED_ALPHA,))
        return _with_extra_samples(encoded.tobytes(), extra[0] if isinstance(extra, tuple) else extra)
    return encoded.tobytes()


_TIFF_EXTRA_SAMPLES = 338
_UNASSOCIATED_ALPHA = 2   # an ExtraSamples value; 1 is premultiplied alpha


def _with_extra_samples(tiff: bytes, extra_samples: int) -> bytes:
    """An RGBA TIFF whose first IFD says, in an ExtraSamples entry, what the fourth sample is.

    OpenCV leaves the entry out, so readers need not take that sample for
    alpha. The IFD is rewritten, with the entry, at the end of the file.
    """
    order = "<" if tiff[:2] == b"II" else ">"
    ifd = struct.unpack_from(order + "I", tiff, 4)[0]
    count = struct.unpack_from(order + "H", tiff, ifd)[0]
    entries = [tiff[start:start + 12] for start in range(ifd + 2, ifd + 2 + 12 * count, 12)]
    if any(struct.unpack_from(order + "H", entry)[0] == _TIFF_EXTRA_SAMPLES for entry in entries):
        return tiff
    entries.append(struct.pack(order + "HHIHH", _TIFF_EXTRA_SAMPLES, 3, 1, extra_samples, 0))
    entries.sort(key=lambda entry: struct.unpack_from(order + "H", entry)[0])
    next_ifd = tiff[ifd + 2 + 12 * count:ifd + 6 + 12 * count]
    out = bytearray(tiff) + b"\0" * (len(tiff) % 2)   # IFDs start on a word boundary
    start = len(out)
    out += struct.pack(order + "H", len(entries)) + b"".join(entries) + next_ifd
    struct.pack_into(order + "I", out, 4, start)
    return bytes(out)


def header_size(path: str) -> Optional[tuple[int, int]]:
    """(width, height) as a local image file's header states them, without decoding a pixel;
    None when the file is not an image Pillow can open."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # a decompression-bomb warning: only the size is read
            with Image.open(path) as image:
                return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def encode_thumbnail(pixels_rgb: np.ndarray, max_side: int = 160) -> bytes:
    """A small baseline JPEG of HxWx3 uint8 RGB pixels, for the EXIF thumbnail."""
    thumb = Image.fromarray(pixels_rgb, mode="RGB")
    thumb.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()
