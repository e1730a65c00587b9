"""JPEG markers: the file's segments, frame, scans and tables, read without decoding. Pure, no Beam.

parse_layout splits a file into its header segments (between SOI and the
first SOS), its scans and the end of the primary image (anything after it
is a trailer: MPF images, vendor data). The rest reads the frame, scan
headers, restart interval, Huffman and quantisation tables that
jpeg.py's block patching and pictures.py's preview removal need.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import struct

import numpy as np

SOI, EOI, SOS, DHT, DQT, DRI, DAC = 0xD8, 0xD9, 0xDA, 0xC4, 0xDB, 0xDD, 0xCC
COM = 0xFE
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {DHT, 0xC8, DAC}
SUPPORTED_SOF = {0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive"}
MAX_SEGMENT_PAYLOAD = 65533  # bytes in one marker segment after its length field


class LosslessUnavailable(Exception):
    """This JPEG can't be patched block-wise; caller falls back to a full re-encode.

    The message is the reason, for the report.
    """


# --------------------------------------------------------------------------- markers


@dataclasses.dataclass(frozen=True)
class Segment:
    """A marker segment: data[start:end], starting at its 0xFF.

    For SOS, `end` is the end of the scan header, not of the entropy-coded data.
    """

    marker: int
    start: int
    end: int

    def payload(self, data: bytes) -> bytes:
        return data[self.start + 4:self.end]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where things are in one JPEG file.

    header: segments between SOI and the first SOS.
    scans: segments from the first SOS on (SOS headers, and DHT/DRI/... between scans).
    scan_start: offset of the first SOS; eoi_end: offset just after the primary EOI.
    Anything after eoi_end is a trailer (MPF images, vendor data).
    """

    header: tuple[Segment, ...]
    scans: tuple[Segment, ...]
    scan_start: int
    eoi_end: int


def segment_end(data: bytes, start: int) -> int:
    if start + 4 > len(data):
        raise LosslessUnavailable("truncated JPEG marker segment")
    length = int.from_bytes(data[start + 2:start + 4], "big")
    if length < 2 or start + 2 + length > len(data):
        raise LosslessUnavailable(f"JPEG marker 0x{data[start + 1]:02X} has a bad length")
    return start + 2 + length


def entropy_markers(data: bytes, pos: int) -> tuple[list[int], list[int]]:
    """Offsets and codes of the markers at or after `pos`, skipping stuffed
    bytes (FF00), restart markers and fill bytes."""
    if pos >= len(data) - 1:
        return [], []
    arr = np.frombuffer(data, np.uint8, offset=pos)
    ff = np.flatnonzero(arr[:-1] == 0xFF)
    code = arr[ff + 1]
    keep = (code != 0x00) & (code != 0xFF) & ((code < 0xD0) | (code > 0xD7))
    return (ff[keep] + pos).tolist(), code[keep].tolist()


def is_header_marker(marker: int) -> bool:
    """True for the markers of segments that may come between SOI and SOS."""
    return marker in SOF_MARKERS or marker in (DHT, DQT, DRI, DAC, COM) or 0xE0 <= marker <= 0xEF


def parse_layout(data: bytes) -> Layout:
    """Split a JPEG into its segments up to the primary image's EOI.

    Raises:
        LosslessUnavailable: not a well-formed JPEG.
    """
    if data[:3] != b"\xff\xd8\xff":
        raise LosslessUnavailable("not a JPEG (no SOI marker)")
    header = []
    pos = 2
    while True:
        while pos + 1 < len(data) and data[pos] == 0xFF and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 1 >= len(data) or data[pos] != 0xFF:
            raise LosslessUnavailable("corrupt JPEG header (bytes between marker segments)")
        marker = data[pos + 1]
        if marker == SOS:
            break
        if marker in (SOI, EOI) or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            raise LosslessUnavailable(f"unexpected marker 0x{marker:02X} in the JPEG header")
        end = segment_end(data, pos)
        header.append(Segment(marker, pos, end))
        pos = end
    scans = [Segment(SOS, pos, segment_end(data, pos))]
    cursor = scans[0].end
    for offset, marker in zip(*entropy_markers(data, cursor)):
        if offset < cursor:
            continue  # inside a segment we already stepped over
        if marker == EOI:
            return Layout(tuple(header), tuple(scans), scans[0].start, offset + 2)
        end = segment_end(data, offset)
        scans.append(Segment(marker, offset, end))
        cursor = end
    raise LosslessUnavailable("truncated JPEG (no EOI marker)")


@dataclasses.dataclass(frozen=True)
class Component:
    ident: int
    h: int
    v: int
    table: int


@dataclasses.dataclass(frozen=True)
class Frame:
    marker: int
    precision: int
    height: int
    width: int
    components: tuple[Component, ...]

    @property
    def progressive(self) -> bool:
        return self.marker == 0xC2


def parse_frame(data: bytes, layout: Layout) -> Frame:
    frames = [s for s in layout.header if s.marker in SOF_MARKERS]
    if len(frames) != 1:
        raise LosslessUnavailable(f"expected one SOF marker, found {len(frames)}")
    seg = frames[0]
    body = seg.payload(data)
    precision, height, width, count = struct.unpack_from(">BHHB", body)
    if len(body) < 6 + 3 * count:
        raise LosslessUnavailable("truncated SOF marker")
    comps = tuple(Component(body[6 + 3 * i], body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15, body[8 + 3 * i])
                  for i in range(count))
    return Frame(seg.marker, precision, height, width, comps)


@dataclasses.dataclass(frozen=True)
class Scan:
    components: tuple[int, ...]  # component ids
    tables: tuple[int, ...]      # Td << 4 | Ta per component
    ss: int
    se: int
    ah: int
    al: int


def parse_scan(data: bytes, seg: Segment) -> Scan:
    body = seg.payload(data)
    count = body[0]
    if len(body) < 4 + 2 * count:
        raise LosslessUnavailable("truncated SOS marker")
    ids = tuple(body[1 + 2 * i] for i in range(count))
    tables = tuple(body[2 + 2 * i] for i in range(count))
    ss, se, a = body[1 + 2 * count:4 + 2 * count]
    return Scan(ids, tables, ss, se, a >> 4, a & 15)


def restart_interval(data: bytes, segments) -> int:
    intervals = [int.from_bytes(s.payload(data)[:2], "big") for s in segments if s.marker == DRI]
    return intervals[-1] if intervals else 0


def huffman_tables(data: bytes, segments) -> dict[tuple[int, int], bytes]:
    """{(class, id): counts + symbols} of the DHT segments among `segments`."""
    tables = {}
    for seg in segments:
        if seg.marker != DHT:
            continue
        body, pos = seg.payload(data), 0
        while pos + 17 <= len(body):
            size = 17 + sum(body[pos + 1:pos + 17])
            tables[(body[pos] >> 4, body[pos] & 15)] = bytes(body[pos + 1:pos + size])
            pos += size
    return tables


def _zigzag_to_natural() -> np.ndarray:
    """Natural (row-major) index of each zigzag position."""
    cells = sorted(((r, c) for r in range(8) for c in range(8)),
                   key=lambda rc: (rc[0] + rc[1], rc[1] if (rc[0] + rc[1]) % 2 == 0 else rc[0]))
    return np.array([r * 8 + c for r, c in cells])


ZIGZAG = _zigzag_to_natural()


def quant_tables(data: bytes, segments) -> dict[int, np.ndarray]:
    """{table id: 8x8 float array in natural order} from the DQT segments."""
    tables = {}
    for seg in segments:
        if seg.marker != DQT:
            continue
        body, pos = seg.payload(data), 0
        while pos < len(body):
            wide, ident = body[pos] >> 4, body[pos] & 15
            size = 128 if wide else 64
            raw = np.frombuffer(body[pos + 1:pos + 1 + size], ">u2" if wide else np.uint8)
            if raw.size != 64:
                raise LosslessUnavailable("truncated DQT marker")
            table = np.zeros(64)
            table[ZIGZAG] = raw
            tables[ident] = table.reshape(8, 8)
            pos += 1 + size
    return tables


@functools.cache
def standard_huffman_tables() -> dict[tuple[int, int], bytes]:
    """The JPEG standard's example tables (Annex K.3), as libjpeg writes them
    when it is not optimising: taken from a tiny non-optimised Pillow file."""
    from PIL import Image  # local: Pillow is only needed for this one-off

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", optimize=False)
    data = buffer.getvalue()
    return huffman_tables(data, parse_layout(data).header)


def uses_standard_huffman(data: bytes, layout: Layout, frame: Frame) -> bool:
    """True if the source's scans use the standard tables the way libjpeg assigns them."""
    standard = standard_huffman_tables()
    tables = huffman_tables(data, layout.header + layout.scans)
    luma_id = frame.components[0].ident
    for seg in layout.scans:
        if seg.marker != SOS:
            continue
        scan = parse_scan(data, seg)
        for ident, selector in zip(scan.components, scan.tables):
            expected = 0 if ident == luma_id else 1
            for klass, table in ((0, selector >> 4), (1, selector & 15)):
                if table != expected or tables.get((klass, table)) != standard.get((klass, expected)):
                    return False
    return True


def scan_script(data: bytes, layout: Layout) -> tuple[Scan, ...]:
    return tuple(parse_scan(data, s) for s in layout.scans if s.marker == SOS)
