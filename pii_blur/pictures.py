"""Pictures hidden in an image file's metadata: find them, check them, remove them. Pure, no Beam.

An embedded picture (EXIF thumbnail, MPF preview, XMP thumbnail, the
unblurred original that Google Camera keeps in XMP GImage, a depth map, a
Photoshop thumbnail, a picture someone pasted into a comment) shows the scene
as it was when the picture was made. Blurring the main image does nothing to
it, and an editor that covered a face often left it stale.

Two rules keep them from leaking:

- **Allow-list.** A written output keeps only known metadata: in JPEG the
  JFIF, EXIF, standard XMP, ICC, Photoshop/IPTC and Adobe segments and
  comments; in PNG the standard chunks (text, EXIF, ICC, colour and physical
  chunks); in WebP the EXIF, XMP and ICC chunks. Every other segment or chunk
  (extended XMP, MPF, FlashPix, APP3-APP12, APP15, private chunks) and
  anything after the end of the image is dropped.
- **Scan what is kept.** Each kept payload is searched for JPEG, PNG, WebP
  and HEIF/AVIF pictures, both as raw bytes and inside base64 text (XMP
  stores pictures that way), with compressed PNG text decompressed first.
  Raw pictures are zeroed and base64 ones replaced by spaces of the same
  length, so no offset or length around them moves. The only picture allowed
  to stay is the EXIF thumbnail that pii-blur itself rebuilt from the output.

`clean()` applies both; `find()` lists pictures without changing anything
(used to verify outputs, and to decide whether an input with nothing to blur
can be copied byte for byte: see `shows_the_photo`).
"""

from __future__ import annotations

import binascii
import dataclasses
import io
import re
import struct
import warnings
import zlib
from typing import Optional

import cv2
import numpy as np

from pii_blur import jpeg_markers as markers

_EXIF_ID = b"Exif\x00"
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_EXTENSION_ID = b"http://ns.adobe.com/xmp/extension/\x00"
_MPF_ID = b"MPF\x00"
_ICC_ID = b"ICC_PROFILE\x00"

# JPEG APPn segments kept in outputs, by marker and payload identifier.
_KEPT_JPEG_APPS = {
    0xE0: (b"JFIF\x00", b"JFXX\x00"),
    0xE1: (_EXIF_ID, _XMP_ID),
    0xE2: (_ICC_ID,),
    0xED: (b"Photoshop 3.0\x00",),
    0xEE: (b"Adobe",),
}
# PNG chunks kept in outputs besides the image data (IHDR, PLTE, IDAT, IEND).
_KEPT_PNG_CHUNKS = {b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs", b"bKGD", b"hIST",
                    b"tIME", b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"cICP", b"mDCv", b"cLLi"}
_PNG_IMAGE_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
# WebP chunks kept: the image itself, then metadata.
_WEBP_IMAGE_CHUNKS = {b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF"}
_KEPT_WEBP_CHUNKS = {b"ICCP", b"EXIF", b"XMP "}

_XMP_THUMBNAILS = re.compile(rb"<([\w.-]+):Thumbnails\b[^>]*(?<!/)>.*?</\1:Thumbnails\s*>", re.DOTALL)
_PICTURE_MAGIC = re.compile(
    rb"\xff\xd8\xff|\x89PNG\r\n\x1a\n|RIFF.{4}WEBP|.{4}ftyp(?:heic|heix|hevc|heim|heis|mif1|msf1|avif|avis)",
    re.DOTALL)
# Runs of base64 long enough to hold a picture (the smallest JPEG is about 125 bytes).
_BASE64_RUN = re.compile(rb"(?:[A-Za-z0-9+/]\s*){96,}=*")
_MAX_INFLATED = 64 << 20   # bytes a compressed PNG text chunk may inflate to before it counts as a bomb
_APP1_EXIF_HEADER = len(b"Exif\x00\x00")   # bytes before the TIFF structure in a JPEG's EXIF segment
_MAX_PNG_PAYLOAD = (1 << 31) - 1   # bytes a PNG chunk may hold


class PictureError(Exception):
    """A picture that cannot be removed, or metadata that cannot be checked."""


@dataclasses.dataclass(frozen=True)
class EmbeddedPicture:
    """A picture found inside a file's metadata.

    where: the segment or chunk, e.g. 'APP1 XMP', 'PNG tEXt', 'after the image'.
    kind: jpeg | png | webp | heif. encoding: raw | base64.
    data: the picture's bytes (decoded from base64; possibly cut off).
    span: (start, end) of the bytes that carry it, within its segment's or
        chunk's payload (the base64 text for base64 ones).
    """

    where: str
    kind: str
    encoding: str
    data: bytes
    span: tuple[int, int]

    def describe(self) -> str:
        return f"{self.where}: {self.kind} ({self.encoding}, {len(self.data)} bytes)"


# --------------------------------------------------------------------------- scanning payloads


def _kind(match: re.Match) -> str:
    head = match.group(0)
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head.startswith(b"\x89PNG"):
        return "png"
    return "webp" if head.startswith(b"RIFF") else "heif"


def _raw_end(kind: str, body: bytes, start: int) -> Optional[int]:
    """Where a picture that starts at `start` ends (the end of `body` if cut off); None if not a picture."""
    if kind == "jpeg":
        return _jpeg_stream_end(body, start)
    if kind == "png":
        end = body.find(b"IEND", start)
        return len(body) if end < 0 else min(end + 8, len(body))
    if kind == "webp":
        return min(start + 8 + int.from_bytes(body[start + 4:start + 8], "little"), len(body))
    return len(body)


def _raw_pictures(body: bytes) -> list[tuple[str, int, int]]:
    """(kind, start, end) of every raw picture in `body`, not overlapping."""
    found, cursor = [], 0
    for match in _PICTURE_MAGIC.finditer(body):
        start = match.start()
        if start < cursor:
            continue
        kind = _kind(match)
        end = _raw_end(kind, body, start)
        if end is None:
            continue
        found.append((kind, start, end))
        cursor = end
    return found


def _decode_base64(text: bytes) -> list[bytes]:
    """`text` decoded at each of the four alignments a base64 run may start at."""
    compact = re.sub(rb"\s+", b"", text).rstrip(b"=")
    decoded = []
    for shift in range(4):
        usable = compact[shift:]
        remainder = len(usable) % 4
        usable = usable[:-1] if remainder == 1 else usable + b"=" * ((4 - remainder) % 4)
        if usable:
            try:
                decoded.append(binascii.a2b_base64(usable))
            except binascii.Error:
                continue
    return decoded


def scan(body: bytes, where: str) -> list[EmbeddedPicture]:
    """Every picture in one metadata payload, raw or base64-encoded."""
    pictures = [EmbeddedPicture(where, kind, "raw", body[start:end], (start, end))
                for kind, start, end in _raw_pictures(body)]
    raw_spans = [p.span for p in pictures]
    for match in _BASE64_RUN.finditer(body):
        if any(start <= match.start() < end for start, end in raw_spans):
            continue
        for decoded in _decode_base64(match.group(0)):
            inner = _raw_pictures(decoded)
            if inner:
                kind, start, end = inner[0]
                pictures.append(EmbeddedPicture(where, kind, "base64", decoded[start:end], match.span()))
                break
    return pictures


def _blank(body: bytes, pictures: list[EmbeddedPicture]) -> bytes:
    """`body` with each picture's span zeroed (raw) or turned to spaces (base64)."""
    out = bytearray(body)
    for picture in pictures:
        start, end = picture.span
        out[start:end] = (b"\x00" if picture.encoding == "raw" else b" ") * (end - start)
    return bytes(out)


def _jpeg_stream_end(body: bytes, start: int) -> Optional[int]:
    """End of the JPEG stream starting at `start`, or None if the bytes there
    are not a JPEG (an SOI followed by well-formed segments up to an SOS).
    A stream cut off by the end of `body` ends there."""
    pos, seen = start + 2, 0
    while pos + 4 <= len(body) and body[pos] == 0xFF:
        marker = body[pos + 1]
        if not (markers.is_header_marker(marker) or marker == markers.SOS):
            return None
        end = pos + 2 + int.from_bytes(body[pos + 2:pos + 4], "big")
        if end > len(body):
            return len(body) if seen >= 1 else None
        seen += 1
        if marker == markers.SOS:
            eoi = body.find(b"\xff\xd9", end)
            return len(body) if eoi < 0 else eoi + 2
        pos = end
    return len(body) if seen >= 2 and pos >= len(body) else None


# --------------------------------------------------------------------------- containers


def container_of(data: bytes) -> Optional[str]:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def _segment_name(marker: int, body: bytes) -> str:
    if marker == markers.COM:
        return "COM"
    ident = body[:body.find(b"\x00")] if b"\x00" in body[:40] else b""
    label = {_XMP_ID[:-1]: "XMP", _XMP_EXTENSION_ID[:-1]: "extended XMP"}.get(ident)
    if label is None:
        label = ident.decode("ascii") if ident.isascii() and ident.decode("ascii").isprintable() else ""
    return f"APP{marker - 0xE0} {label}".rstrip()


def _kept_segment(marker: int, body: bytes) -> bool:
    if marker == markers.COM:
        return True
    return body.startswith(_KEPT_JPEG_APPS.get(marker, ()))


def png_chunks(data: bytes):
    """(type, payload, start, end) of each chunk of a PNG."""
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise PictureError(f"PNG chunk {kind!r} runs past the end of the file")
        yield kind, data[pos + 8:pos + 8 + length], pos, end
        pos = end
        if kind == b"IEND":
            return


def whole_png_chunks(data: bytes) -> Optional[list[tuple[bytes, bytes, int, int]]]:
    """png_chunks of a PNG that runs whole from IHDR to a final IEND at its very end; else None."""
    try:
        chunks = list(png_chunks(data))
    except PictureError:   # a chunk runs past the end
        return None
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND" or chunks[-1][3] != len(data):
        return None
    return chunks


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """A PNG chunk: length, type, payload, CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _inflate(compressed: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(compressed, _MAX_INFLATED)
    except zlib.error as error:
        raise PictureError(f"PNG text chunk does not inflate: {error}") from error
    if inflater.unconsumed_tail:
        raise PictureError(f"PNG text chunk inflates past {_MAX_INFLATED} bytes")
    return text


def _png_text(kind: bytes, payload: bytes) -> tuple[bytes, bool]:
    """(the text a PNG chunk carries, whether it is stored compressed)."""
    if kind in (b"zTXt", b"iCCP"):
        keyword_end = payload.find(b"\x00")
        return _inflate(payload[keyword_end + 2:]), True
    if kind == b"iTXt":
        keyword_end = payload.find(b"\x00")
        compressed = payload[keyword_end + 1:keyword_end + 2] == b"\x01"
        language_end = payload.find(b"\x00", keyword_end + 3)
        text_start = payload.find(b"\x00", language_end + 1) + 1
        text = payload[text_start:]
        return (_inflate(text), True) if compressed else (text, False)
    return payload, False


def _webp_chunks(data: bytes):
    """(type, payload, start, end) of each chunk of a WebP file."""
    pos = 12
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        end = pos + 8 + size + (size & 1)
        if pos + 8 + size > len(data):
            raise PictureError(f"WebP chunk {kind!r} runs past the end of the file")
        yield kind, data[pos + 8:pos + 8 + size], pos, min(end, len(data))
        pos = end


def _tiff_payloads(data: bytes) -> list[tuple[str, bytes]]:
    """The metadata values of a TIFF's first IFD and its EXIF IFD, as bytes."""
    from PIL import Image  # Pillow reads the IFDs; the pixel data is never scanned

    payloads = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = Image.open(io.BytesIO(data))
        tags = dict(image.tag_v2)
        if 330 in tags:
            raise PictureError("TIFF has sub-IFD images (previews), which cannot be checked")
        exif_ifd = image.getexif().get_ifd(0x8769)
    pixel_tags = {273, 279, 324, 325}   # strip and tile offsets and sizes
    for source, values in (("TIFF", tags), ("TIFF EXIF", exif_ifd)):
        for tag, value in values.items():
            if tag in pixel_tags:
                continue
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogateescape")
            if isinstance(value, (bytes, bytearray)):
                payloads.append((f"{source} tag {tag}", bytes(value)))
    return payloads


def find(data: bytes) -> list[EmbeddedPicture]:
    """Every picture embedded in the metadata of an image file (not its own pixels).

    Raises:
        PictureError: the container cannot be parsed well enough to check it.
    """
    container = container_of(data)
    found: list[EmbeddedPicture] = []
    if container == "jpeg":
        try:
            layout = markers.parse_layout(data)
        except markers.LosslessUnavailable as error:
            raise PictureError(str(error)) from error
        for seg in layout.header:
            if 0xE0 <= seg.marker <= 0xEF or seg.marker == markers.COM:
                body = seg.payload(data)
                found += scan(body, _segment_name(seg.marker, body))
        found += scan(data[layout.eoi_end:], "after the image")
    elif container == "png":
        for kind, payload, _, _ in png_chunks(data):
            if kind not in _PNG_IMAGE_CHUNKS:
                found += scan(_png_text(kind, payload)[0], f"PNG {kind.decode('latin-1')}")
    elif container == "webp":
        for kind, payload, _, _ in _webp_chunks(data):
            if kind not in _WEBP_IMAGE_CHUNKS:
                found += scan(payload, f"WebP {kind.decode('latin-1').strip()}")
    elif container == "tiff":
        try:
            for where, payload in _tiff_payloads(data):
                found += scan(payload, where)
        except (OSError, ValueError, SyntaxError, struct.error) as error:
            raise PictureError(f"TIFF metadata cannot be read: {error}") from error
    else:
        raise PictureError("unknown container")
    return found


def verify(data: bytes, allowed: Optional[bytes]) -> None:
    """Raise PictureError if `data` embeds any picture other than `allowed` (pii-blur's own thumbnail)."""
    left = [p for p in find(data) if allowed is None or p.data != allowed]
    if left:
        raise PictureError("embedded picture survived cleaning: " + "; ".join(p.describe() for p in left))


# --------------------------------------------------------------------------- cleaning


def clean(data: bytes, thumbnail_jpeg: Optional[bytes]) -> tuple[bytes, list[str]]:
    """`data` with only allow-listed metadata and no embedded picture but `thumbnail_jpeg`.

    thumbnail_jpeg: the new EXIF thumbnail (a small JPEG of the output's own
        pixels), put where a JPEG's or PNG's EXIF thumbnail was; None removes it. No
        thumbnail is added to a file that had none.
    Returns (new bytes, what was removed or replaced, one phrase each). The
    image data itself is never touched. TIFF is only checked: its metadata is
    written by exiftool from an allow-list (metadata.py).

    Raises:
        PictureError: the file cannot be parsed, or (TIFF) it carries a picture.
    """
    container = container_of(data)
    if container == "jpeg":
        return _clean_jpeg(data, thumbnail_jpeg)
    if container == "png":
        return _clean_png(data, thumbnail_jpeg)
    if container == "webp":
        return _clean_webp(data)
    if container == "tiff":
        pictures = find(data)
        if pictures:
            raise PictureError("TIFF metadata carries pictures: " + "; ".join(p.describe() for p in pictures))
        return data, []
    raise PictureError("unknown container")


def _clean_jpeg(data: bytes, thumbnail_jpeg: Optional[bytes]) -> tuple[bytes, list[str]]:
    try:
        layout = markers.parse_layout(data)
    except markers.LosslessUnavailable as error:
        raise PictureError(str(error)) from error
    actions: list[str] = []
    parts = [b"\xff\xd8"]
    for seg in layout.header:
        body = seg.payload(data)
        if not (0xE0 <= seg.marker <= 0xEF or seg.marker == markers.COM):
            parts.append(data[seg.start:seg.end])
            continue
        name = _segment_name(seg.marker, body)
        if not _kept_segment(seg.marker, body):
            actions.append(f"{name} segment removed")
            continue
        keep = None
        if body.startswith(_EXIF_ID):
            body, keep, action = _replace_exif_thumbnail(body, thumbnail_jpeg, _APP1_EXIF_HEADER,
                                                         markers.MAX_SEGMENT_PAYLOAD)
            actions += [action] if action else []
        elif body.startswith((b"JFIF\x00", b"JFXX\x00")):
            body, action = _blank_jfif_thumbnail(body)
            actions += [action] if action else []
        elif body.startswith(_XMP_ID):
            body, count = _XMP_THUMBNAILS.subn(lambda m: b" " * len(m.group(0)), body)
            actions += [f"XMP thumbnails blanked ({count})"] if count else []
        pictures = _scan_except(body, name, keep)
        if pictures:
            body = _blank(body, pictures)
            actions += [f"{p.describe()} removed" for p in pictures]
        parts.append(bytes([0xFF, seg.marker]) + (len(body) + 2).to_bytes(2, "big") + body)
    parts.append(data[layout.scan_start:layout.eoi_end])
    if len(data) > layout.eoi_end:
        actions.append(f"{len(data) - layout.eoi_end} bytes after the image removed")
    return b"".join(parts), actions


def _clean_png(data: bytes, thumbnail_jpeg: Optional[bytes]) -> tuple[bytes, list[str]]:
    actions: list[str] = []
    parts = [data[:8]]
    for kind, payload, start, end in png_chunks(data):
        name = f"PNG {kind.decode('latin-1')}"
        if kind in _PNG_IMAGE_CHUNKS:
            parts.append(data[start:end])
            continue
        if kind not in _KEPT_PNG_CHUNKS:
            actions.append(f"{name} chunk removed")
            continue
        body, keep = payload, None
        if kind == b"eXIf":
            body, keep, action = _replace_exif_thumbnail(payload, thumbnail_jpeg, 0, _MAX_PNG_PAYLOAD)
            actions += [action] if action else []
        text, compressed = _png_text(kind, body)
        pictures = _scan_except(text, name, keep)
        if pictures and compressed:
            actions.append(f"{name} chunk removed: " + "; ".join(p.describe() for p in pictures))
            continue
        if pictures:
            offset = len(body) - len(text)   # the text is the end of the payload
            body = _blank(body, [dataclasses.replace(p, span=(p.span[0] + offset, p.span[1] + offset))
                                 for p in pictures])
            actions += [f"{p.describe()} removed" for p in pictures]
        parts.append(data[start:end] if body == payload else png_chunk(kind, body))
    return b"".join(parts), actions


def png_exif_with_thumbnail(payload: bytes, thumbnail_jpeg: Optional[bytes]) -> tuple[bytes, list[EmbeddedPicture]]:
    """A PNG eXIf payload with its IFD1 JPEG thumbnail, if it has one, replaced by
    `thumbnail_jpeg` (removed when None), and the other pictures it holds (left in).

    Raises:
        PictureError: the EXIF structure cannot be read.
    """
    body, keep, _action = _replace_exif_thumbnail(payload, thumbnail_jpeg, 0, _MAX_PNG_PAYLOAD)
    return body, _scan_except(body, "PNG eXIf", keep)


def _scan_except(body: bytes, where: str, keep: Optional[tuple[int, int]]) -> list[EmbeddedPicture]:
    """scan(), less a picture starting inside `keep` (the span of pii-blur's own thumbnail)."""
    return [p for p in scan(body, where) if keep is None or not keep[0] <= p.span[0] < keep[1]]


def _clean_webp(data: bytes) -> tuple[bytes, list[str]]:
    actions: list[str] = []
    parts = []
    for kind, payload, start, end in _webp_chunks(data):
        name = f"WebP {kind.decode('latin-1').strip()}"
        if kind in _WEBP_IMAGE_CHUNKS:
            parts.append(data[start:end])
        elif kind not in _KEPT_WEBP_CHUNKS:
            actions.append(f"{name} chunk removed")
        else:
            pictures = scan(payload, name)
            body = _blank(payload, pictures)
            actions += [f"{p.describe()} removed" for p in pictures]
            parts.append(data[start:start + 8] + body + data[start + 8 + len(payload):end])
    body = b"WEBP" + b"".join(parts)
    return b"RIFF" + len(body).to_bytes(4, "little") + body, actions


def _replace_exif_thumbnail(body: bytes, thumbnail: Optional[bytes], tiff_start: int,
                            max_length: int) -> tuple[bytes, Optional[tuple[int, int]], str]:
    """Replace or remove the IFD1 thumbnail of an EXIF payload.

    tiff_start: bytes before the TIFF structure (6 in a JPEG APP1 segment, 0 in a PNG eXIf chunk).
    max_length: bytes the payload may grow to; a thumbnail that would not fit is removed.
    Returns (new payload, span of the new thumbnail in it or None, action or '').
    """
    header, tiff = body[:tiff_start], bytearray(body[tiff_start:])
    found = _find_exif_thumbnail(tiff)
    if found is None:
        return body, None, ""
    order, link, offset_at, length_at, offset, length = found
    tiff[offset:offset + length] = bytes(length)  # no unblurred pixel stays behind
    if thumbnail is not None and len(thumbnail) <= length:   # fits where the old one was: nothing moves
        tiff[offset:offset + len(thumbnail)] = thumbnail
        struct.pack_into(order + "I", tiff, length_at, len(thumbnail))
        span = (tiff_start + offset, tiff_start + offset + len(thumbnail))
        return header + bytes(tiff), span, "EXIF thumbnail rebuilt from the output"
    if offset + length == len(tiff):
        del tiff[offset:]
    padding = len(tiff) % 2
    if thumbnail is None or tiff_start + len(tiff) + padding + len(thumbnail) > max_length:
        struct.pack_into(order + "I", tiff, link, 0)  # unlink IFD1
        reason = "" if thumbnail is None else " (replacement too large)"
        return header + bytes(tiff), None, "EXIF thumbnail removed" + reason
    tiff += bytes(padding)
    struct.pack_into(order + "I", tiff, offset_at, len(tiff))
    struct.pack_into(order + "I", tiff, length_at, len(thumbnail))
    start = tiff_start + len(tiff)
    tiff += thumbnail
    return header + bytes(tiff), (start, start + len(thumbnail)), "EXIF thumbnail rebuilt from the output"


def _find_exif_thumbnail(tiff: bytearray):
    """Locate the IFD1 JPEG thumbnail in TIFF-structured EXIF data.

    Returns (byte order, offset of IFD0's next-IFD link, offsets of the
    JPEGInterchangeFormat and ...Length values, thumbnail offset, length), or
    None when there is no thumbnail.
    """
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        raise PictureError("malformed EXIF header")
    order = "<" if tiff[:2] == b"II" else ">"

    def read(fmt: str, at: int) -> int:
        if at < 0 or at + struct.calcsize(fmt) > len(tiff):
            raise PictureError("malformed EXIF IFD")
        return struct.unpack_from(order + fmt, tiff, at)[0]

    ifd0 = read("I", 4)
    link = ifd0 + 2 + 12 * read("H", ifd0)
    ifd1 = read("I", link)
    if ifd1 == 0:
        return None
    entries = {}
    for i in range(read("H", ifd1)):
        at = ifd1 + 2 + 12 * i
        entries[read("H", at)] = (read("H", at + 2), at + 8)
    if 0x0201 not in entries:
        if 0x0111 in entries:
            raise PictureError("uncompressed EXIF thumbnail is not supported")
        return None
    (type_off, offset_at), (type_len, length_at) = entries[0x0201], entries.get(0x0202, (0, 0))
    if type_off != 4 or type_len != 4:
        raise PictureError("malformed EXIF thumbnail tags")
    offset, length = read("I", offset_at), read("I", length_at)
    if offset < 8 or offset + length > len(tiff):
        raise PictureError("EXIF thumbnail points outside the EXIF segment")
    return order, link, offset_at, length_at, offset, length


def _blank_jfif_thumbnail(body: bytes) -> tuple[bytes, str]:
    """Zero the uncompressed thumbnail of a JFIF APP0 or a JFXX palette/RGB
    thumbnail (JFXX JPEG thumbnails are found by the scan)."""
    if body.startswith(b"JFIF\x00") and len(body) >= 14 and body[12] * body[13]:
        start = 14
    elif body.startswith(b"JFXX\x00") and len(body) >= 8 and body[5] in (0x11, 0x13):
        start = 8
    else:
        return body, ""
    if not any(body[start:]):
        return body, ""
    return body[:start] + bytes(len(body) - start), "JFIF thumbnail zeroed"


# --------------------------------------------------------------------------- stale previews


# Largest difference, in 8-bit levels averaged over 4x4-pixel cells of the
# picture, between an embedded picture and the photo it should preview.
# A re-encoded, rescaled copy of the same pixels stays under 12; a covered or
# blurred face in a 160-px thumbnail differs by 40 and more.
SAME_PHOTO_TOLERANCE = 20.0


def shows_the_photo(picture: bytes, photo_rgb: np.ndarray) -> bool:
    """True if `picture` (an encoded image) is a faithful, smaller copy of `photo_rgb`.

    photo_rgb: HxWx3 uint8 RGB, the main image as stored (EXIF thumbnails
    and previews share its layout). A picture may be letterboxed with plain
    bars. Anything that does not decode, or differs anywhere by more than
    SAME_PHOTO_TOLERANCE, is not a copy: it may show what the photo no longer
    does (a stale preview from before an edit).
    """
    decoded = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        return False
    decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB).astype(np.float32)
    picture_h, picture_w = decoded.shape[:2]
    photo_h, photo_w = photo_rgb.shape[:2]
    scale = min(picture_w / photo_w, picture_h / photo_h)
    fit_w, fit_h = int(round(photo_w * scale)), int(round(photo_h * scale))
    if fit_w < 8 or fit_h < 8 or scale > 1.0:
        return False
    left, top = (picture_w - fit_w) // 2, (picture_h - fit_h) // 2
    bars = np.ones((picture_h, picture_w), bool)
    bars[top:top + fit_h, left:left + fit_w] = False
    if bars.any() and decoded[bars].std(axis=0).max() > 8.0:
        return False
    expected = cv2.resize(photo_rgb, (fit_w, fit_h), interpolation=cv2.INTER_AREA).astype(np.float32)
    content = decoded[top:top + fit_h, left:left + fit_w]
    difference = np.abs(cv2.GaussianBlur(content, (0, 0), 1.0) - cv2.GaussianBlur(expected, (0, 0), 1.0))
    cells = cv2.resize(difference.mean(axis=2), (max(fit_w // 4, 1), max(fit_h // 4, 1)),
                       interpolation=cv2.INTER_AREA)
    return float(cells.max()) <= SAME_PHOTO_TOLERANCE
