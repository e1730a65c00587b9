"""A corpus of hostile and awkward inputs, and what the pipeline must make of each.

`make_corpus(folder, good_images)` writes the files under `folder` and
returns {relative path: expected kind}. Kinds:

- ``failed``, ``skipped``: bad inputs. They end in the report with a reason
  and nothing is written to OUTPUT for them.
- ``blurred``: good images of a face (the astronaut, 256x256 upright) in an
  awkward encoding; the face must be found and blurred.
- ``copied``: good images with nothing to blur, copied byte for byte.
- ``cleaned``: good images with nothing to blur whose embedded pictures
  (thumbnails, previews, pictures hidden in metadata) show something else,
  such as a face that an editor covered in the photo itself. Their output
  keeps the pixels and loses the pictures.
- ``damaged``: bit-flipped files. A flip may land where no decoder can see
  it (pixel data of an uncompressed TIFF, a JPEG's entropy-coded data), so
  these must end ``failed``, or be processed like any image; never a crash.

Everything is generated in a few seconds from two arrays with Pillow, numpy
and hand-built bytes, with a seeded RNG, so the corpus is the same on every
run. Symbolic links and a FIFO are made only where the OS supports them; the
target of the "outside" links is written next to `folder`, not inside it.

As a script: ``python tests/hostile_corpus.py OUT_DIR`` writes the corpus
and prints a count per kind.
"""

from __future__ import annotations

import base64
import collections
import io
import os
import struct
import sys
import unicodedata
import zlib

import numpy as np
from PIL import Image

FACE_SIDE = 256          # the face image is the astronaut resized to FACE_SIDE x FACE_SIDE
ORIENTATION_TAG = 0x0112
MAGIC_LENGTH = {"jpg": 3, "png": 8, "tif": 4, "webp": 12}   # bytes before a file is recognisably an image
SEED = 20240506


# --------------------------------------------------------------------------- encoders


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    """Pixels in `fmt`; HxWx4 arrays are taken as RGBA, or CMYK with cmyk=True."""
    buffer = io.BytesIO()
    if options.pop("cmyk", False):
        image = Image.frombuffer("CMYK", (pixels.shape[1], pixels.shape[0]), np.ascontiguousarray(pixels).tobytes())
    else:
        image = Image.fromarray(pixels)
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(pixels: np.ndarray, **options) -> bytes:
    return encode(pixels, "JPEG", quality=options.pop("quality", 90), **options)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_raw(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes,
            extra_chunks: tuple[bytes, ...] = ()) -> bytes:
    """A PNG from already filtered rows (each starting with its filter byte)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + header + b"".join(extra_chunks)
            + png_chunk(b"IDAT", zlib.compress(rows, 9)) + png_chunk(b"IEND", b""))


def png_16bit_rgb(rgb8: np.ndarray) -> bytes:
    """48-bit RGB PNG (Pillow cannot write one)."""
    wide = (rgb8.astype(np.uint16) * 257).astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in wide)
    return png_raw(rgb8.shape[1], rgb8.shape[0], 16, 2, rows)


def ycck_jpeg(rgb: np.ndarray) -> bytes:
    """An Adobe YCCK JPEG, as Photoshop writes CMYK: Pillow writes the four
    planes of a CMYK image untouched (inverted, Adobe style); we store YCbCr of
    the inverted RGB there and flip the Adobe transform flag from 0 to 2."""
    inverted = (255 - rgb).astype(np.float64)
    r, g, b = inverted[..., 0], inverted[..., 1], inverted[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    planes = np.clip(np.dstack([y, cb, cr, np.full(y.shape, 255.0)]).round(), 0, 255).astype(np.uint8)
    data = encode(255 - planes, "JPEG", cmyk=True, quality=92)
    adobe = data.find(b"\xff\xee\x00\x0eAdobe")
    assert adobe > 0, "Pillow wrote no Adobe segment"
    transform = adobe + 4 + 11
    return data[:transform] + b"\x02" + data[transform + 1:]


def tiff_bytes(pixels: np.ndarray, **options) -> bytes:
    return encode(pixels, "TIFF", **options)


# --------------------------------------------------------------------------- EXIF


def exif_segment(tiff: bytes) -> bytes:
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_app1(jpeg_data: bytes, *segments: bytes) -> bytes:
    """Insert raw APP1 segments right after SOI (a JFIF APP0 is dropped)."""
    body = jpeg_data[2:]
    if body[:2] == b"\xff\xe0":
        body = body[2 + struct.unpack(">H", body[2:4])[0]:]
    return b"\xff\xd8" + b"".join(segments) + body


def ifd(entries: list[tuple[int, int, int, bytes]], next_offset: int, order: str = "<") -> bytes:
    """An IFD: entries of (tag, type, count, 4-byte value or offset)."""
    out = struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        out += struct.pack(order + "HHI", tag, kind, count) + value.ljust(4, b"\x00")[:4]
    return out + struct.pack(order + "I", next_offset)


def short(value: int) -> bytes:
    return struct.pack("<H", value)


def long(value: int) -> bytes:
    return struct.pack("<I", value)


def absurd_exif() -> dict[str, bytes]:
    """Name -> TIFF-structured EXIF payload that lies about its own structure.

    Offsets are from the start of the TIFF header ("II*\\0" + IFD0 offset),
    IFD0 at 8.
    """
    head = b"II*\x00" + long(8)
    orientation_1 = (ORIENTATION_TAG, 3, 1, short(1))
    cases = {
        "ifd0-offset-past-end": b"II*\x00" + long(0x7FFFFFF0),
        "ifd0-offset-zero": b"II*\x00" + long(0),
        "ifd0-entry-count-65535": head + struct.pack("<H", 0xFFFF) + b"\x00" * 24,
        "ifd0-links-to-itself": head + ifd([orientation_1], 8),
        "ifd1-links-back-to-ifd0": head + ifd([orientation_1], 26) + ifd([(0x0100, 3, 1, short(1))], 8),
        "exif-ifd-is-ifd0": head + ifd([orientation_1, (0x8769, 4, 1, long(8))], 0),
        "gps-ifd-past-end": head + ifd([(0x8825, 4, 1, long(0xFFFFFF00))], 0),
        "make-count-4-billion": head + ifd([(0x010F, 2, 0xFFFFFFFF, long(64))], 0),
        "orientation-as-ascii": head + ifd([(ORIENTATION_TAG, 2, 4, b"six\x00")], 0),
        "orientation-count-1000": head + ifd([(ORIENTATION_TAG, 3, 1000, long(20))], 0),
        "orientation-0": head + ifd([(ORIENTATION_TAG, 3, 1, short(0))], 0),
        "orientation-9": head + ifd([(ORIENTATION_TAG, 3, 1, short(9))], 0),
        "orientation-65535": head + ifd([(ORIENTATION_TAG, 3, 1, short(65535))], 0),
        "unknown-type-99": head + ifd([(0x010F, 99, 8, long(0xFFFF))], 0),
        "byte-order-xx": b"XX*\x00" + long(8) + ifd([orientation_1], 0),
        "header-cut-short": b"II*",
        "empty-payload": b"",
        "thumbnail-outside-segment": head + ifd([orientation_1], 26)
        + ifd([(0x0201, 4, 1, long(0x10000000)), (0x0202, 4, 1, long(0x7FFFFFFF))], 0),
        "thumbnail-overlaps-ifd": head + ifd([orientation_1], 26)
        + ifd([(0x0201, 4, 1, long(0)), (0x0202, 4, 1, long(64))], 0),
        "big-endian-deep-chain": b"MM\x00*" + struct.pack(">I", 8)
        + b"".join(ifd([(0x0100, 3, 1, b"\x00\x01")], 8 + 18 * (i + 1) if i < 499 else 0, ">") for i in range(500)),
    }
    return cases


# --------------------------------------------------------------------------- bombs


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header claiming width x height RGB, with a few bytes of pixel data."""
    return png_raw(width, height, 8, 2, b"\x00" * 64)[:-12]


def png_zero_bomb(width: int, height: int) -> bytes:
    """A real, complete greyscale PNG of zeros: tiny on disk, huge decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    chunks = [compressor.compress(row) for _ in range(height)]
    idat = b"".join(chunks) + compressor.flush()
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_declaring(small_jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 claims another size."""
    sof = small_jpeg.find(b"\xff\xc0")
    return small_jpeg[:sof + 5] + struct.pack(">HH", height, width) + small_jpeg[sof + 9:]


def tiff_declaring(width: int, height: int) -> bytes:
    """An uncompressed RGB TIFF claiming width x height, holding 64 bytes."""
    entries = [(0x0100, 4, 1, long(width)), (0x0101, 4, 1, long(height)), (0x0102, 3, 1, short(8)),
               (0x0103, 3, 1, short(1)), (0x0106, 3, 1, short(1)), (0x0111, 4, 1, long(8 + 2 + 12 * 7 + 4)),
               (0x0117, 4, 1, long(64))]
    return b"II*\x00" + long(8) + ifd(entries, 0) + b"\x00" * 64


def webp_declaring(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP claiming a canvas of width x height, without a frame."""
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    vp8x = b"VP8X" + long(10) + b"\x00\x00\x00\x00" + canvas
    return b"RIFF" + long(4 + len(vp8x)) + b"WEBP" + vp8x


def png_text_bomb(small_png: bytes) -> bytes:
    """A valid small PNG carrying a zTXt chunk that inflates to 200 MB."""
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(b"\x00" * (1 << 20)) for _ in range(200)) + compressor.flush()
    bomb = png_chunk(b"zTXt", b"Comment\x00\x00" + body)
    end = small_png.rfind(b"IEND") - 4
    return small_png[:end] + bomb + small_png[end:]


def png_icc_bomb(small_png: bytes) -> bytes:
    """A valid small PNG whose iCCP profile inflates to 200 MB."""
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(b"\x00" * (1 << 20)) for _ in range(200)) + compressor.flush()
    chunk = png_chunk(b"iCCP", b"bomb\x00\x00" + body)
    ihdr_end = 8 + 25
    return small_png[:ihdr_end] + chunk + small_png[ihdr_end:]


# --------------------------------------------------------------------------- the corpus


class _Corpus:
    def __init__(self, folder: str):
        self.folder = folder
        self.kinds: dict[str, str] = {}

    def add(self, relative: str, data: bytes, kind: str) -> None:
        path = os.path.join(self.folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        self.kinds[relative] = kind

    def link(self, relative: str, target: str, kind: str = "failed") -> None:
        path = os.path.join(self.folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)
        self.kinds[relative] = kind


def _orient(upright: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels that EXIF `orientation` turns into `upright` (inverse of the EXIF transform)."""
    stored = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, 1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, -1),
    }[orientation](upright)
    return np.ascontiguousarray(stored)


def _offsets(length: int, first: int, last: int, count: int) -> list[int]:
    """`count` distinct cut points in [first, last), denser near the start where headers live."""
    spread = np.unique(np.round(first + (last - first) * np.linspace(0, 1, count, endpoint=False) ** 2).astype(int))
    return [int(o) for o in spread if first <= o < min(last, length)]


def make_corpus(folder: str, good_images: dict[str, np.ndarray]) -> dict[str, str]:
    """Write the corpus under `folder`; returns {relative path: expected kind}.

    good_images: {"face": upright RGB uint8 photo with one face (the
    astronaut), "plain": RGB uint8 photo with nothing to blur (the rocket)}.
    """
    rng = np.random.default_rng(SEED)
    corpus = _Corpus(folder)
    face = np.asarray(Image.fromarray(good_images["face"]).resize((FACE_SIDE, FACE_SIDE), Image.LANCZOS))
    plain = good_images["plain"]
    tiny = np.ascontiguousarray(plain[100:196, 200:328])     # 96x128, nothing to blur: cheap to detect on
    _good(corpus, face, plain)
    _bad_bytes(corpus, plain, tiny)
    _truncated(corpus, plain, face)
    _bit_flipped(corpus, tiny, rng)
    _not_images(corpus, tiny, rng)
    _bombs(corpus, tiny)
    _absurd_exif(corpus, face)
    _odd_names(corpus, face, tiny)
    _links_and_specials(corpus, face, tiny)
    _hidden_pictures(corpus, face, plain)
    _reserved_names(corpus, face, tiny)
    return corpus.kinds


def _good(corpus: _Corpus, face: np.ndarray, plain: np.ndarray) -> None:
    grey = np.asarray(Image.fromarray(face).convert("L"))
    alpha = np.dstack([face, np.full(face.shape[:2], 200, np.uint8)])
    palette = Image.fromarray(face).quantize(256)
    palette_buffer = io.BytesIO()
    palette.save(palette_buffer, "PNG", transparency=0)
    files = {
        "good/face-rgb.jpg": jpeg(face),
        "good/face-progressive.jpg": jpeg(face, progressive=True),
        "good/face-cmyk.jpg": _cmyk_jpeg(face),
        "good/face-ycck.jpg": ycck_jpeg(face),
        "good/face-grey.jpg": jpeg(grey),
        "good/face-grey.png": encode(grey, "PNG"),
        "good/face-grey-16bit.png": encode((grey.astype(np.uint16) * 257), "PNG"),
        "good/face-rgb-16bit.png": png_16bit_rgb(face),
        "good/face-rgba.png": encode(alpha, "PNG"),
        "good/face-grey-alpha.png": _la_png(grey),
        "good/face-palette.png": _palette_png(face),
        "good/face-palette-transparent.png": palette_buffer.getvalue(),
        "good/face-lossy.webp": encode(face, "WEBP", quality=90),
        "good/face-lossless.webp": encode(face, "WEBP", lossless=True),
        "good/face-raw.tif": tiff_bytes(face),
        "good/face-lzw.tif": tiff_bytes(face, compression="tiff_lzw"),
        "good/face-grey-16bit.tif": tiff_bytes(grey.astype(np.uint16) * 257),
    }
    for name, data in files.items():
        corpus.add(name, data, "blurred")
    for name, data in {"good/plain.jpg": jpeg(plain), "good/plain.png": encode(plain, "PNG"),
                       "good/plain-cmyk.jpg": _cmyk_jpeg(plain), "good/plain.webp": encode(plain, "WEBP"),
                       "good/plain.tif": tiff_bytes(plain)}.items():
        corpus.add(name, data, "copied")
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation
        corpus.add(f"orientation/face-{orientation}.jpg", jpeg(_orient(face, orientation), exif=exif.tobytes()),
                   "blurred")
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    corpus.add("orientation/plain-6.jpg", jpeg(_orient(plain, 6), exif=exif.tobytes()), "copied")


def _cmyk_jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _la_png(grey: np.ndarray) -> bytes:
    return encode(np.dstack([grey, np.full(grey.shape, 180, np.uint8)]), "PNG")


def _palette_png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).quantize(256).save(buffer, "PNG")
    return buffer.getvalue()


def _bad_bytes(corpus: _Corpus, plain: np.ndarray, tiny: np.ndarray) -> None:
    for name in ("empty.jpg", "empty.png", "empty.tif", "empty.webp", "empty", ".empty-hidden.jpg",
                 "nested/deeper/empty.jpeg"):
        corpus.add(f"empty/{name}", b"", "failed")
    # Unsupported or unsafe image formats: recognised, refused.
    gif = io.BytesIO()
    Image.fromarray(tiny).save(gif, "GIF")
    bmp = io.BytesIO()
    Image.fromarray(tiny).save(bmp, "BMP")
    ico = io.BytesIO()
    Image.fromarray(tiny).save(ico, "ICO")
    frames = [Image.fromarray(tiny), Image.fromarray(tiny[::-1].copy())]
    pages, animated_webp, apng = io.BytesIO(), io.BytesIO(), io.BytesIO()
    frames[0].save(pages, "TIFF", save_all=True, append_images=frames[1:])
    frames[0].save(animated_webp, "WEBP", save_all=True, append_images=frames[1:])
    frames[0].save(apng, "PNG", save_all=True, append_images=frames[1:])
    for name, data in {"gif.jpg": gif.getvalue(), "bmp.jpg": bmp.getvalue(), "ico.jpg": ico.getvalue(),
                       "heic.jpg": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
                       "avif.jpg": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64,
                       "psd.jpg": b"8BPS\x00\x01" + b"\x00" * 64,
                       "jxl.jpg": b"\xff\x0a" + bytes(range(64)),
                       "multipage.tif": pages.getvalue(), "animated.webp": animated_webp.getvalue(),
                       "animated.png": apng.getvalue()}.items():
        corpus.add(f"unsupported/{name}", data, "failed")


def _truncated(corpus: _Corpus, plain: np.ndarray, face: np.ndarray) -> None:
    """Files cut short at many offsets, from 1 byte up to just before the end of the pixel data."""
    sources = {
        "jpeg": ("jpg", jpeg(plain), 90),
        "jpeg-progressive": ("jpg", jpeg(face, progressive=True), 50),
        "png": ("png", encode(plain, "PNG"), 80),
        "tiff": ("tif", tiff_bytes(plain, compression="tiff_lzw"), 60),
        "webp": ("webp", encode(plain, "WEBP", quality=80), 60),
        "webp-lossless": ("webp", encode(face, "WEBP", lossless=True), 30),
    }
    for name, (extension, data, count) in sources.items():
        # Stop before the trailer (JPEG EOI, PNG IEND, ...): a file missing only
        # its trailer still holds every pixel.
        last = len(data) - 64
        for offset in _offsets(len(data), 1, last, count):
            kind = "skipped" if offset < MAGIC_LENGTH[extension] else "failed"
            corpus.add(f"truncated/{name}/cut-{offset:07d}.{extension}", data[:offset], kind)
    # A raw TIFF cut inside its strip: the classic "grey bottom half" file.
    raw = tiff_bytes(plain)
    for fraction in (0.25, 0.5, 0.9, 0.999):
        corpus.add(f"truncated/tiff-raw/cut-{fraction}.tif", raw[:int(len(raw) * fraction)], "failed")


def _bit_flipped(corpus: _Corpus, tiny: np.ndarray, rng: np.random.Generator) -> None:
    sources = {"jpeg": ("jpg", jpeg(tiny)), "png": ("png", encode(tiny, "PNG")),
               "tiff": ("tif", tiff_bytes(tiny, compression="tiff_lzw")), "tiff-raw": ("tif", tiff_bytes(tiny))}
    for name, (extension, data) in sources.items():
        for index in range(45 if name != "tiff-raw" else 15):
            flipped = bytearray(data)
            flips = (1, 3, 9)[index % 3]
            for position in rng.integers(MAGIC_LENGTH[extension], len(data), flips):
                flipped[position] ^= 1 << int(rng.integers(0, 8))
            corpus.add(f"bitflip/{name}/flip-{index:03d}.{extension}", bytes(flipped), "damaged")


def _not_images(corpus: _Corpus, tiny: np.ndarray, rng: np.random.Generator) -> None:
    zip_file = io.BytesIO()
    import zipfile
    with zipfile.ZipFile(zip_file, "w") as archive:
        archive.writestr("photo.jpg", jpeg(tiny))
    import gzip
    files = {
        "text.jpg": b"Holiday photos, see attached.\n" * 10,
        "pdf.jpg": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n",
        "zip-with-a-photo-inside.jpg": zip_file.getvalue(),
        "mp4.jpg": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 200,
        "mov.jpg": b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + b"\x00" * 200,
        "html.jpg": b"<!DOCTYPE html><html><body><img src=x.jpg></body></html>",
        "svg.jpg": b'<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>',
        "json.jpg": b'{"not": "an image"}',
        "elf.jpg": b"\x7fELF\x02\x01\x01" + b"\x00" * 120,
        "gzip-of-a-jpeg.jpg": gzip.compress(jpeg(tiny)),
        "wav.jpg": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64,
        "riff-short.webp": b"RIFF\x04\x00\x00\x00WEB",
        "bm-text.jpg": b"BMW service history: 2019, 2021, 2023.\n",
        "single-ff.jpg": b"\xff",
        "nul-bytes.jpg": b"\x00" * 4096,
        "utf16-bom.jpg": "not an image".encode("utf-16"),
        "jpeg-magic-in-middle.jpg": b"prefix" + jpeg(tiny),
        "png-magic-lowercase.png": b"\x89png\r\n\x1a\n" + encode(tiny, "PNG")[8:],
    }
    for name, data in files.items():
        corpus.add(f"not-images/{name}", data, "skipped")
    for index in range(25):
        data = bytearray(rng.integers(0, 256, int(rng.integers(1, 20000)), dtype=np.uint8).tobytes())
        data[0] = 0x01   # no image format starts with 0x01
        corpus.add(f"not-images/random-{index:02d}.jpg", bytes(data), "skipped")


def _bombs(corpus: _Corpus, tiny: np.ndarray) -> None:
    small_jpeg, small_png = jpeg(tiny), encode(tiny, "PNG")
    files = {
        "png-100000x100000.png": png_declaring(100_000, 100_000),
        "png-2147483647x1.png": png_declaring(0x7FFFFFFF, 1),
        "png-0x0.png": png_declaring(0, 0),
        "png-zeros-20000x16000.png": png_zero_bomb(20_000, 16_000),
        "jpeg-65500x65500.jpg": jpeg_declaring(small_jpeg, 65_500, 65_500),
        "jpeg-0-height.jpg": jpeg_declaring(small_jpeg, 128, 0),
        "tiff-100000x100000.tif": tiff_declaring(100_000, 100_000),
        "tiff-4294967295x4294967295.tif": tiff_declaring(0xFFFFFFFF, 0xFFFFFFFF),
        "webp-canvas-16777216.webp": webp_declaring(1 << 24, 1 << 24),
    }
    for name, data in files.items():
        corpus.add(f"bombs/{name}", data, "failed")
    # Metadata bombs on a valid image: Pillow stops inflating text and ICC
    # chunks at 1 MB and refuses the file.
    corpus.add("bombs/png-ztxt-200MB.png", png_text_bomb(small_png), "failed")
    corpus.add("bombs/png-iccp-200MB.png", png_icc_bomb(small_png), "failed")


def _absurd_exif(corpus: _Corpus, face: np.ndarray) -> None:
    """Face JPEGs with a hand-built APP1 EXIF segment that lies. The pixels are
    fine, so the face must still be blurred (orientation taken as 1 when the
    EXIF cannot be read, as viewers do)."""
    base = jpeg(face)
    for name, tiff in absurd_exif().items():
        corpus.add(f"exif/{name}.jpg", with_app1(base, exif_segment(tiff)), "blurred")
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 1
    sideways = Image.Exif()
    sideways[ORIENTATION_TAG] = 6
    corpus.add("exif/two-exif-segments.jpg",
               with_app1(base, exif_segment(exif.tobytes()[6:]), exif_segment(sideways.tobytes()[6:])), "blurred")
    # An APP1 whose length runs past the end of the file: no image data left.
    corpus.add("exif/app1-length-past-end.jpg", base[:2] + b"\xff\xe1\xff\xf0Exif\x00\x00II*\x00" + base[2:200],
               "failed")
    png_with_exif = encode(face, "PNG")[:-12] + png_chunk(b"eXIf", absurd_exif()["ifd1-links-back-to-ifd0"])
    corpus.add("exif/png-exif-loop.png", png_with_exif + png_chunk(b"IEND", b""), "blurred")


def _odd_names(corpus: _Corpus, face: np.ndarray, tiny: np.ndarray) -> None:
    names = ["a b  c.jpg", " leading space.jpg", "trailing space.jpg ", "new\nline.jpg", "carriage\rreturn.jpg",
             "tab\there.jpg", "日本語の写真.jpg", "émoji 📷.jpg", unicodedata.normalize("NFD", "café.jpg"),
             "-rf.jpg", "--help.jpg", "star*.jpg", "question?.jpg", "brackets[1].jpg", "double::colon.jpg",
             "hash#fragment.jpg", "percent%20encoded.jpg", "back\\slash.jpg", "quote'\"s.jpg", "x" * 240 + ".jpg",
             ".hidden.jpg", "ünïcödé folder/inner.jpg", "file:name.jpg", "s3:/bucket.jpg"]
    for index, name in enumerate(names):
        with_face = index % 4 == 0
        corpus.add(f"names/{name}", jpeg(face) if with_face else jpeg(tiny), "blurred" if with_face else "copied")
    if sys.platform != "darwin":   # not valid UTF-8: fine on Linux, refused by APFS
        undecodable = os.fsdecode(b"latin1-caf\xe9.jpg")
        corpus.add(f"names/{undecodable}", jpeg(tiny), "copied")


def _links_and_specials(corpus: _Corpus, face: np.ndarray, tiny: np.ndarray) -> None:
    """Symbolic links are never followed inside INPUT (each is reported
    `failed`), so nothing outside INPUT can reach OUTPUT. A FIFO would block a
    reader forever; it must be refused too."""
    if not hasattr(os, "symlink"):
        return
    outside = os.path.join(os.path.dirname(os.path.abspath(corpus.folder)), "outside-of-input")
    os.makedirs(outside, exist_ok=True)
    with open(os.path.join(outside, "secret-face.jpg"), "wb") as handle:
        handle.write(jpeg(face))
    corpus.add("links/real.jpg", jpeg(tiny), "copied")
    corpus.link("links/to-inside-file.jpg", "real.jpg")
    corpus.link("links/to-outside-file.jpg", os.path.join(outside, "secret-face.jpg"))
    corpus.link("links/to-outside-relative.jpg", os.path.relpath(os.path.join(outside, "secret-face.jpg"),
                                                                 os.path.join(corpus.folder, "links")))
    corpus.link("links/to-outside-folder", outside)
    corpus.link("links/to-parent-folder", "..")
    corpus.link("links/dangling.jpg", "does-not-exist.jpg")
    corpus.link("links/self.jpg", "self.jpg")
    corpus.link("links/loop-a.jpg", "loop-b.jpg")
    corpus.link("links/loop-b.jpg", "loop-a.jpg")
    corpus.link("links/to-dev-zero.jpg", "/dev/zero")
    if hasattr(os, "mkfifo"):
        fifo = os.path.join(corpus.folder, "links", "fifo.jpg")
        os.mkfifo(fifo)
        corpus.kinds["links/fifo.jpg"] = "failed"


# --------------------------------------------------------------------------- pictures in metadata


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def with_segments(jpeg_data: bytes, *segments: bytes) -> bytes:
    """Insert raw marker segments right after SOI (and a JFIF APP0, if any)."""
    at = 2
    if jpeg_data[2:4] == b"\xff\xe0":
        at = 4 + struct.unpack(">H", jpeg_data[4:6])[0]
    return jpeg_data[:at] + b"".join(segments) + jpeg_data[at:]


def exif_with_thumbnail(thumbnail: bytes) -> bytes:
    """A TIFF-structured EXIF payload with an IFD0 and an IFD1 JPEG thumbnail."""
    head = b"II*\x00" + long(8)
    ifd0 = ifd([(ORIENTATION_TAG, 3, 1, short(1))], 26)                          # 8 .. 26
    ifd1 = ifd([(0x0201, 4, 1, long(56)), (0x0202, 4, 1, long(len(thumbnail)))], 0)  # 26 .. 56
    return head + ifd0 + ifd1 + thumbnail


def xmp_packet(properties: str, namespaces: str = "", prefix: str = "xmp") -> bytes:
    return ("<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?><x:xmpmeta xmlns:x='adobe:ns:meta/'>"
            "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
            f"<rdf:Description rdf:about='' xmlns:{prefix}='http://ns.adobe.com/xap/1.0/' {namespaces}>"
            f"{properties}</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end='w'?>").encode()


def xmp_segment(packet: bytes) -> bytes:
    return segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + packet)


def extended_xmp_segments(packet: bytes, guid: bytes = b"0" * 32) -> list[bytes]:
    """APP1 extended-XMP segments carrying `packet` in chunks, as the XMP spec lays them out."""
    chunks, step = [], 60000
    for offset in range(0, len(packet), step):
        chunks.append(segment(0xE1, b"http://ns.adobe.com/xmp/extension/\x00" + guid
                              + struct.pack(">II", len(packet), offset) + packet[offset:offset + step]))
    return chunks


def thumbnail_of(rgb: np.ndarray, side: int = 160) -> bytes:
    image = Image.fromarray(rgb)
    image.thumbnail((side, side))
    return encode(np.asarray(image), "JPEG", quality=85)


def _covered(face: np.ndarray) -> np.ndarray:
    """The face photo after an editor painted over the face: nothing left to find."""
    scale = face.shape[0] / 512
    covered = face.copy()
    covered[int(30 * scale):int(200 * scale), int(150 * scale):int(300 * scale)] = (128, 128, 128)
    return covered


def _hidden_pictures(corpus: _Corpus, face: np.ndarray, plain: np.ndarray) -> None:
    """Pictures of the face hidden in metadata: none may survive into an output.

    The face photos are blurred; the photos with nothing to find but a stale
    or foreign picture inside are `cleaned`; those whose previews really show
    them stay byte-identical copies.
    """
    face_jpeg = thumbnail_of(face, 160)
    face_png = encode(np.asarray(Image.fromarray(face).resize((64, 64))), "PNG")
    face_b64 = base64.b64encode(face_jpeg).decode()
    google = ("xmlns:GImage='http://ns.google.com/photos/1.0/image/' "
              "xmlns:GDepth='http://ns.google.com/photos/1.0/depthmap/'")
    portrait = xmp_packet(f"<GImage:Mime>image/jpeg</GImage:Mime><GImage:Data>{face_b64}</GImage:Data>"
                          f"<GDepth:Data>{base64.b64encode(face_png).decode()}</GDepth:Data>", google)
    thumbnails = xmp_packet("<xmp:Thumbnails><rdf:Alt><rdf:li rdf:parseType='Resource'>"
                            f"<xmpGImg:image>{face_b64}</xmpGImg:image></rdf:li></rdf:Alt></xmp:Thumbnails>",
                            "xmlns:xmpGImg='http://ns.adobe.com/xap/1.0/g/img/'")
    extended = xmp_packet(f"<GImage:Data>{face_b64}</GImage:Data>", google, prefix="xap")
    main_for_extended = xmp_packet("<xmpNote:HasExtendedXMP>" + "0" * 32 + "</xmpNote:HasExtendedXMP>",
                                   "xmlns:xmpNote='http://ns.adobe.com/xmp/note/'", prefix="xap")
    half = len(face_jpeg) // 2
    in_jpeg = {
        "google-portrait": [xmp_segment(portrait)],
        "xmp-thumbnail": [xmp_segment(thumbnails)],
        "com-base64": [segment(0xFE, face_b64.encode())],
        "app9-png": [segment(0xE9, face_png)],
        "app9-split-jpeg": [segment(0xE9, face_jpeg[:half]), segment(0xE9, face_jpeg[half:])],
        "extended-xmp-xap": [xmp_segment(main_for_extended), *extended_xmp_segments(extended)],
        "exif-thumbnail": [exif_segment(exif_with_thumbnail(face_jpeg))],
    }
    for name, segments in in_jpeg.items():
        corpus.add(f"pictures/face-{name}.jpg", with_segments(jpeg(face), *segments), "blurred")
        corpus.add(f"pictures/stale-{name}.jpg", with_segments(jpeg(_covered(face)), *segments), "cleaned")
    corpus.add("pictures/face-trailer.jpg", jpeg(face) + face_jpeg, "blurred")
    corpus.add("pictures/stale-trailer.jpg", jpeg(_covered(face)) + face_jpeg, "cleaned")
    comment = png_chunk(b"tEXt", b"Comment\x00" + face_b64.encode())
    compressed = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(face_b64.encode()))
    private = png_chunk(b"prVt", face_png)
    for name, chunk in {"text": comment, "ztxt": compressed, "private-chunk": private}.items():
        for prefix, pixels, kind in (("face", face, "blurred"), ("stale", _covered(face), "cleaned")):
            data = encode(pixels, "PNG")
            corpus.add(f"pictures/{prefix}-png-{name}.png", data[:33] + chunk + data[33:], kind)
    xmp_chunk = b"XMP " + struct.pack("<I", len(portrait)) + portrait + b"\x00" * (len(portrait) % 2)
    for prefix, pixels, kind in (("face", face, "blurred"), ("stale", _covered(face), "cleaned")):
        data = encode(pixels, "WEBP", lossless=True)
        body = data[12:] + xmp_chunk   # a simple (VP8L-only) WebP, its XMP chunk after the image
        corpus.add(f"pictures/{prefix}-webp-xmp.webp", b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body,
                   kind)
        corpus.add(f"pictures/{prefix}-tiff-xmp.tif", tiff_bytes(pixels, tiffinfo={700: portrait}), kind)
    # Previews that do show the photo: copied byte for byte.
    plain_small = np.asarray(Image.fromarray(plain).resize((320, 240)))
    corpus.add("pictures/plain-own-exif-thumbnail.jpg",
               with_segments(jpeg(plain_small), exif_segment(exif_with_thumbnail(thumbnail_of(plain_small)))),
               "copied")
    corpus.add("pictures/plain-own-xmp-thumbnail.jpg", with_segments(jpeg(plain_small), xmp_segment(xmp_packet(
        "<xmp:Thumbnails><rdf:Alt><rdf:li rdf:parseType='Resource'><xmpGImg:image>"
        f"{base64.b64encode(thumbnail_of(plain_small)).decode()}</xmpGImg:image></rdf:li></rdf:Alt></xmp:Thumbnails>",
        "xmlns:xmpGImg='http://ns.adobe.com/xap/1.0/g/img/'"))), "copied")


def _reserved_names(corpus: _Corpus, face: np.ndarray, tiny: np.ndarray) -> None:
    """Inputs named like pii-blur's own files: processed like any other where
    that is safe, refused with a reason where the output would land on the
    run's own files."""
    corpus.add("reserved/photo.pii-blur-tmp-1.jpg", jpeg(face), "blurred")
    corpus.add("reserved/.pii-blur-tmp-x.jpg", jpeg(tiny), "copied")
    corpus.add("reserved/.pii-blur-tmp-" + "0123456789abcdef" * 2, jpeg(tiny), "failed")
    corpus.add(".pii-blur/manifest/photo.jpg", jpeg(tiny), "failed")
    corpus.add("pii-blur-report.jsonl", jpeg(tiny), "failed")       # would be the default report's path
    corpus.add("reserved/pii-blur-report.jsonl", jpeg(face), "blurred")   # a report name elsewhere is fine


def _main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tests/hostile_corpus.py OUT_DIR", file=sys.stderr)
        return 2
    import skimage.data

    kinds = make_corpus(argv[1], {"face": skimage.data.astronaut(), "plain": skimage.data.rocket()})
    counts = collections.Counter(kinds.values())
    print(f"{len(kinds)} files in {argv[1]}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
