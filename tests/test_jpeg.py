"""Tests for pii_blur.jpeg (block-wise JPEG patching) and pii_blur.pictures on JPEGs (embedded-preview removal).

Fixtures are built here from scikit-image's astronaut photo with Pillow,
jpegtran and exiftool, and the blur is a plain Gaussian inside an ellipse
over the face. That keeps these tests independent of blur.py's tuning.
"""

from __future__ import annotations

import base64
import io
import shutil
import struct
import subprocess

import cv2
import jpeglib
import numpy as np
import pytest
from PIL import Image, ImageCms

from pii_blur import jpeg as pjpeg
from pii_blur import jpeg_markers as markers
from pii_blur import pictures

skimage_data = pytest.importorskip("skimage.data")

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
needs_jpegtran = pytest.mark.skipif(shutil.which("jpegtran") is None, reason="jpegtran not installed")

FACE_CENTRE = (235, 135)  # x, y of the astronaut's face in the 512x512 image
FACE_AXES = (62, 80)      # ellipse semi-axes covering face and hair
FACE_BOX = (190, 75, 280, 195)  # x1, y1, x2, y2, inside the ellipse
# Pillow's subsampling codes and the resulting chroma block footprint in pixels (h, w).
SUBSAMPLING = {"444": (0, (8, 8)), "422": (1, (8, 16)), "420": (2, (16, 16))}


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def face_mask(astronaut) -> np.ndarray:
    mask = np.zeros(astronaut.shape[:2], np.uint8)
    cv2.ellipse(mask, FACE_CENTRE, FACE_AXES, 0, 0, 360, 1, -1)
    return mask.astype(bool)


def encode(pixels: np.ndarray, subsampling: str = "420", progressive: bool = False, **options) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if image.mode == "L":
        image.save(buffer, "JPEG", quality=90, progressive=progressive, **options)
    else:
        image.save(buffer, "JPEG", quality=90, subsampling=SUBSAMPLING[subsampling][0],
                   progressive=progressive, **options)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    return np.asarray(image.convert("L" if image.mode == "L" else "RGB"))


def blur_inside(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    blurred = cv2.GaussianBlur(pixels, (0, 0), 12)
    where = mask[:, :, None] if pixels.ndim == 3 else mask
    return np.where(where, blurred, pixels)


def with_restarts(data: bytes, tmp_path, interval: str = "1") -> bytes:
    source, target = tmp_path / "norestart.jpg", tmp_path / "restart.jpg"
    source.write_bytes(data)
    subprocess.run(["jpegtran", "-copy", "all", "-restart", interval, "-outfile", str(target), str(source)],
                   check=True)
    return target.read_bytes()


def coefficients(data: bytes, tmp_path, name: str) -> list[np.ndarray]:
    path = tmp_path / name
    path.write_bytes(data)
    jpeg = jpeglib.read_dct(str(path))
    jpeg.load()
    return [c.copy() for c in (jpeg.Y, jpeg.Cb, jpeg.Cr) if c is not None]


def segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of the segments before the first SOS."""
    layout = markers.parse_layout(data)
    return [(s.marker, s.payload(data)) for s in layout.header]


def exiftool(path, *args: str) -> str:
    return subprocess.run(["exiftool", *args, str(path)], check=True, capture_output=True, text=True).stdout


def exiftool_binary(path, tag: str) -> bytes:
    return subprocess.run(["exiftool", "-b", f"-{tag}", str(path)], check=True, capture_output=True).stdout


def add_mpf_preview(primary: bytes, preview: bytes) -> bytes:
    """Insert an APP2 MPF segment after the APPn segments and append `preview`
    after the primary EOI, as cameras do (offsets count from the MPF TIFF header)."""
    def segment(primary_size: int, preview_offset: int) -> bytes:
        tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 3)
        tiff += struct.pack("<HHI4s", 0xB000, 7, 4, b"0100")
        tiff += struct.pack("<HHII", 0xB001, 4, 1, 2)
        tiff += struct.pack("<HHII", 0xB002, 7, 32, 8 + 2 + 3 * 12 + 4)
        tiff += struct.pack("<I", 0)
        tiff += struct.pack("<IIIHH", 0x20030000, primary_size, 0, 2, 0)
        tiff += struct.pack("<IIIHH", 0x00010001, len(preview), preview_offset, 0, 0)
        payload = b"MPF\x00" + tiff
        return b"\xff\xe2" + struct.pack(">H", len(payload) + 2) + payload

    layout = markers.parse_layout(primary)
    insert_at = max(s.end for s in layout.header if 0xE0 <= s.marker <= 0xEF)
    primary_size = len(primary) + len(segment(0, 0))
    tiff_start = insert_at + 8  # FF E2, length, 'MPF\0'
    return (primary[:insert_at] + segment(primary_size, primary_size - tiff_start)
            + primary[insert_at:] + preview)


def add_app_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    """Insert a segment after the last APPn segment of the header."""
    layout = markers.parse_layout(data)
    insert_at = max(s.end for s in layout.header if 0xE0 <= s.marker <= 0xEF)
    return data[:insert_at] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + data[insert_at:]


def clean_previews(data: bytes, thumbnail: bytes | None) -> bytes:
    return pictures.clean(data, thumbnail)[0]


def xmp_with_thumbnail(thumbnail: bytes) -> bytes:
    image = base64.b64encode(thumbnail).decode()
    packet = f"""<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
<rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'
 xmlns:xmp='http://ns.adobe.com/xap/1.0/' xmlns:xmpGImg='http://ns.adobe.com/xap/1.0/g/img/'>
<dc:description><rdf:Alt><rdf:li xml:lang='x-default'>astronaut test</rdf:li></rdf:Alt></dc:description>
<xmp:Thumbnails><rdf:Alt><rdf:li rdf:parseType='Resource'>
<xmpGImg:format>JPEG</xmpGImg:format><xmpGImg:width>160</xmpGImg:width><xmpGImg:height>160</xmpGImg:height>
<xmpGImg:image>{image}</xmpGImg:image>
</rdf:li></rdf:Alt></xmp:Thumbnails>
</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end='w'?>"""
    return b"http://ns.adobe.com/xap/1.0/\x00" + packet.encode()


def thumbnail_of(pixels: np.ndarray, side: int = 160) -> bytes:
    image = Image.fromarray(pixels)
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def camera_like(astronaut, tmp_path, mpf: bool = True) -> tuple[bytes, bytes, bytes]:
    """A JPEG with ICC, EXIF (GPS, orientation), IFD1 thumbnail, XMP, IPTC, a
    comment and, optionally, an MPF preview. Returns (file, thumbnail, preview)."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "camera.jpg"
    path.write_bytes(encode(astronaut, "422", icc_profile=profile))
    thumbnail = thumbnail_of(astronaut)
    (tmp_path / "thumb.jpg").write_bytes(thumbnail)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-Make=TestCam", "-Model=One", "-Orientation#=1",
                    "-DateTimeOriginal=2024:05:01 10:00:00", "-GPSLatitude=51.5", "-GPSLatitudeRef=N",
                    "-GPSLongitude=0.12", "-GPSLongitudeRef=W", "-XMP-dc:Title=astronaut",
                    "-XMP-GPano:ProjectionType=equirectangular", "-IPTC:Keywords=space",
                    "-Comment=made in a test", f"-ThumbnailImage<={tmp_path / 'thumb.jpg'}", str(path)],
                   check=True)
    data = path.read_bytes()
    preview = encode(np.asarray(Image.fromarray(astronaut).resize((256, 256))), "420")
    if mpf:
        data = add_mpf_preview(data, preview)
    return data, thumbnail, preview


def middle(picture: bytes) -> bytes:
    """64 bytes from the middle of a JPEG's entropy-coded data: unique to its pixels."""
    return picture[len(picture) // 2:len(picture) // 2 + 64]


def footprints(kind: str) -> list[tuple[int, int]]:
    """Pixel footprint (h, w) of one block of each component."""
    if kind.startswith("gray"):
        return [(8, 8)]
    return [(8, 8)] + [SUBSAMPLING[kind[:3]][1]] * 2


def fixture_for(kind: str, astronaut, tmp_path) -> tuple[bytes, np.ndarray]:
    pixels = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY) if kind.startswith("gray") else astronaut
    data = encode(pixels, kind[:3] if not kind.startswith("gray") else "420", progressive="progressive" in kind)
    if "restart" in kind:
        data = with_restarts(data, tmp_path)
    return data, decode(data)


KINDS = ["444", "422", "420", "444-progressive", "422-progressive", "420-progressive", "gray",
         "gray-progressive", "420-restart", "422-progressive-restart"]


@needs_jpegtran
@pytest.mark.parametrize("kind", KINDS)
def test_only_blocks_under_the_mask_change(kind, astronaut, face_mask, tmp_path):
    source, pixels = fixture_for(kind, astronaut, tmp_path)
    out, stats = pjpeg.patch_jpeg_blocks(source, blur_inside(pixels, face_mask), face_mask)

    before = coefficients(source, tmp_path, "in.jpg")
    after = coefficients(out, tmp_path, "out.jpg")
    assert len(before) == len(after) == len(footprints(kind))
    for component, (old, new, block) in enumerate(zip(before, after, footprints(kind))):
        touched = pjpeg.changed_block_mask(face_mask, block)[:old.shape[0], :old.shape[1]]
        differs = np.any(old != new, axis=(2, 3))
        assert not differs[~touched].any(), f"component {component}: a block outside the mask changed"
        assert differs[touched].mean() > 0.5, f"component {component}: the masked blocks did not change"
    assert stats["blocks_changed"] == sum(int(np.any(o != n, axis=(2, 3)).sum()) for o, n in zip(before, after))
    assert stats["blocks_total"] == sum(c.shape[0] * c.shape[1] for c in before)


@needs_jpegtran
@pytest.mark.parametrize("kind", ["420", "422-progressive", "gray", "420-restart"])
def test_frame_scans_and_restarts_are_kept(kind, astronaut, face_mask, tmp_path):
    source, pixels = fixture_for(kind, astronaut, tmp_path)
    out, stats = pjpeg.patch_jpeg_blocks(source, blur_inside(pixels, face_mask), face_mask)

    old, new = markers.parse_layout(source), markers.parse_layout(out)
    assert markers.parse_frame(out, new) == markers.parse_frame(source, old)
    assert pjpeg._script(out, new) == pjpeg._script(source, old)
    assert markers.restart_interval(out, new.header) == markers.restart_interval(source, old.header)
    assert [(m, p) for m, p in segments(out) if m != pjpeg.DHT] == [(m, p) for m, p in segments(source)
                                                                     if m != pjpeg.DHT]
    assert stats["progressive"] == ("progressive" in kind)
    if "restart" in kind:
        assert stats["restart_interval"] > 0
        assert b"\xff\xd0" in out[new.scan_start:]
    assert len(out) == new.eoi_end


@pytest.mark.parametrize("kind", ["420", "444-progressive", "gray"])
def test_blurred_region_loses_its_detail(kind, astronaut, face_mask, tmp_path):
    if "progressive" in kind and shutil.which("jpegtran") is None:
        pytest.skip("jpegtran not installed")
    source, pixels = fixture_for(kind, astronaut, tmp_path)
    blurred = blur_inside(pixels, face_mask)
    out, _ = pjpeg.patch_jpeg_blocks(source, blurred, face_mask)

    result = decode(out).astype(np.float32)
    x1, y1, x2, y2 = FACE_BOX
    def detail(image):
        return float(np.abs(cv2.Laplacian(image[y1:y2, x1:x2], cv2.CV_32F)).mean())
    assert detail(result) < 0.25 * detail(pixels.astype(np.float32))
    # The output shows the blurred pixels, with no more than one re-quantisation of error.
    assert np.abs(result - blurred)[face_mask].mean() < 2.5
    assert np.abs(result - pixels)[face_mask].mean() > 5


def test_standard_huffman_keeps_untouched_mcus_byte_identical(astronaut, tmp_path):
    lower = np.zeros(astronaut.shape[:2], bool)
    lower[400:460, 300:380] = True
    source = encode(astronaut, "420")
    out, stats = pjpeg.patch_jpeg_blocks(source, blur_inside(decode(source), lower), lower)

    assert stats["huffman"] == "standard"
    old, new = markers.parse_layout(source), markers.parse_layout(out)
    old_scan, new_scan = source[old.scan_start:old.eoi_end], out[new.scan_start:new.eoi_end]
    same = next(i for i, (a, b) in enumerate(zip(old_scan, new_scan)) if a != b)
    assert same > 0.6 * len(old_scan)  # every MCU row above row 400 codes to the same bytes


def test_empty_mask_keeps_the_scans(astronaut, tmp_path):
    source = encode(astronaut, "422")
    mask = np.zeros(astronaut.shape[:2], bool)
    out, stats = pjpeg.patch_jpeg_blocks(source, decode(source), mask)
    assert out == source
    assert stats["blocks_changed"] == 0 and stats["blocks_recomputed"] == 0


@needs_exiftool
def test_metadata_is_kept_except_embedded_pictures(astronaut, face_mask, tmp_path):
    source, _, _ = camera_like(astronaut, tmp_path)
    pixels = decode(source)
    thumbnail = thumbnail_of(blur_inside(pixels, face_mask))
    patched, _ = pjpeg.patch_jpeg_blocks(source, blur_inside(pixels, face_mask), face_mask)
    out, actions = pictures.clean(patched, thumbnail)
    (tmp_path / "in.jpg").write_bytes(source)
    (tmp_path / "out.jpg").write_bytes(out)

    def tags(path):
        skip = ("[System]", "[IFD1]", "[MPF0]", "[MPImage")
        return [line for line in exiftool(path, "-a", "-G1", "-s").splitlines()
                if not line.startswith(skip) and "FileSize" not in line]
    assert tags(tmp_path / "out.jpg") == tags(tmp_path / "in.jpg")
    assert "GPano" in exiftool(tmp_path / "out.jpg", "-a", "-G1", "-s")
    assert set(actions) >= {"EXIF thumbnail rebuilt from the output", "APP2 MPF segment removed"}

    def app_segments(data):
        return [(m, p) for m, p in segments(data) if (0xE0 <= m <= 0xEF or m == markers.COM)
                and not p.startswith((b"Exif\x00", b"MPF\x00"))]
    assert app_segments(out) == app_segments(source)  # ICC, XMP, IPTC, COM byte for byte, same order
    exif_in = next(p for m, p in segments(source) if p.startswith(b"Exif\x00"))
    exif_out = next(p for m, p in segments(out) if p.startswith(b"Exif\x00"))
    offset = struct.unpack("<I" if exif_in[6:8] == b"II" else ">I", exif_in[6 + 4:6 + 8])[0]
    assert exif_out[:6 + offset + 200] == exif_in[:6 + offset + 200]  # IFD0 untouched


@needs_exiftool
def test_exif_thumbnail_is_replaced_and_shows_the_blur(astronaut, face_mask, tmp_path):
    source, old_thumbnail, _ = camera_like(astronaut, tmp_path, mpf=False)
    blurred = blur_inside(decode(source), face_mask)
    out = clean_previews(source, thumbnail_of(blurred))
    (tmp_path / "out.jpg").write_bytes(out)

    extracted = exiftool_binary(tmp_path / "out.jpg", "ThumbnailImage")
    assert extracted == thumbnail_of(blurred)
    assert middle(old_thumbnail) not in out
    thumb = decode(extracted).astype(np.float32)
    scale = thumb.shape[0] / astronaut.shape[0]
    x1, y1, x2, y2 = (int(v * scale) for v in FACE_BOX)
    def face(pixels):
        small = cv2.resize(pixels, thumb.shape[1::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
        return small[y1:y2, x1:x2]
    region = thumb[y1:y2, x1:x2]
    assert np.abs(region - face(blurred)).mean() < 4
    assert np.abs(region - face(astronaut)).mean() > 2 * np.abs(region - face(blurred)).mean()


@needs_exiftool
def test_exif_thumbnail_is_removed_without_a_replacement(astronaut, tmp_path):
    source, old_thumbnail, _ = camera_like(astronaut, tmp_path, mpf=False)
    out = clean_previews(source, None)
    (tmp_path / "out.jpg").write_bytes(out)

    assert exiftool_binary(tmp_path / "out.jpg", "ThumbnailImage") == b""
    assert middle(old_thumbnail) not in out
    assert "GPSLatitude" in exiftool(tmp_path / "out.jpg", "-a", "-G1", "-s")


@needs_exiftool
def test_mpf_preview_is_removed(astronaut, face_mask, tmp_path):
    source, _, preview = camera_like(astronaut, tmp_path)
    (tmp_path / "in.jpg").write_bytes(source)
    assert exiftool_binary(tmp_path / "in.jpg", "MPImage2:PreviewImage") == preview  # the fixture is a real MPF file

    pixels = decode(source)
    patched, _ = pjpeg.patch_jpeg_blocks(source, blur_inside(pixels, face_mask), face_mask)
    out = clean_previews(patched, None)
    (tmp_path / "out.jpg").write_bytes(out)
    assert "MPF" not in exiftool(tmp_path / "out.jpg", "-a", "-G1", "-s")
    assert middle(preview) not in out
    assert len(out) == markers.parse_layout(out).eoi_end


@needs_exiftool
def test_remove_or_replace_previews_drops_mpf_and_trailer(astronaut, tmp_path):
    source, _, preview = camera_like(astronaut, tmp_path)
    out = clean_previews(source, None)
    (tmp_path / "out.jpg").write_bytes(out)

    assert "MPF" not in exiftool(tmp_path / "out.jpg", "-a", "-G1", "-s")
    assert middle(preview) not in out
    layout = markers.parse_layout(source)
    assert out.endswith(source[layout.scan_start:layout.eoi_end])  # scans untouched, nothing after EOI


def test_xmp_thumbnail_is_blanked(astronaut, tmp_path):
    old_thumbnail = thumbnail_of(astronaut)
    source = add_app_segment(encode(astronaut), 0xE1, xmp_with_thumbnail(old_thumbnail))
    out = clean_previews(source, None)

    xmp_in = next(p for m, p in segments(source) if p.startswith(b"http://ns.adobe.com/xap/1.0/\x00"))
    xmp_out = next(p for m, p in segments(out) if p.startswith(b"http://ns.adobe.com/xap/1.0/\x00"))
    assert len(xmp_out) == len(xmp_in)
    assert b"xmpGImg:image" not in xmp_out and base64.b64encode(old_thumbnail)[:64] not in out
    assert b"astronaut test" in xmp_out


def test_jpeg_hidden_in_another_segment_is_zeroed(astronaut, tmp_path):
    old_thumbnail = thumbnail_of(astronaut)
    payload = b"Photoshop 3.0\x008BIM\x04\x0c\x00\x00" + struct.pack(">I", len(old_thumbnail)) + old_thumbnail
    source = add_app_segment(encode(astronaut), 0xED, payload)
    out = clean_previews(source, None)

    app13 = next(p for m, p in segments(out) if m == 0xED)
    assert len(app13) == len(payload) and app13.startswith(b"Photoshop 3.0")
    assert middle(old_thumbnail) not in out
    assert not any(app13[-len(old_thumbnail):])


def test_xmp_with_a_google_image_loses_it(astronaut):
    original = base64.b64encode(thumbnail_of(astronaut))
    source = add_app_segment(encode(astronaut), 0xE1,
                             b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta GImage:Data='" + original + b"'/>")
    out = clean_previews(source, None)
    assert original[:64] not in out and b"GImage:Data='" in out


def test_cmyk_is_refused(astronaut, face_mask):
    buffer = io.BytesIO()
    Image.fromarray(astronaut).convert("CMYK").save(buffer, "JPEG")
    with pytest.raises(pjpeg.LosslessUnavailable, match="CMYK"):
        pjpeg.patch_jpeg_blocks(buffer.getvalue(), astronaut, face_mask)


@needs_jpegtran
def test_arithmetic_coding_is_refused(astronaut, face_mask, tmp_path):
    (tmp_path / "in.jpg").write_bytes(encode(astronaut))
    subprocess.run(["jpegtran", "-arithmetic", "-outfile", str(tmp_path / "arith.jpg"), str(tmp_path / "in.jpg")],
                   check=True)
    with pytest.raises(pjpeg.LosslessUnavailable, match="arithmetic"):
        pjpeg.patch_jpeg_blocks((tmp_path / "arith.jpg").read_bytes(), astronaut, face_mask)


def test_truncated_file_is_refused(astronaut, face_mask):
    data = encode(astronaut)
    with pytest.raises(pjpeg.LosslessUnavailable, match="EOI"):
        pjpeg.patch_jpeg_blocks(data[:len(data) // 2], astronaut, face_mask)


def test_corrupt_entropy_data_is_refused_not_fatal(astronaut, face_mask):
    data = bytearray(encode(astronaut))
    start = markers.parse_layout(bytes(data)).scans[0].end
    data[start + 100:start + 4000] = b"\xff\xf2" * 1950  # unknown markers where the scan should be
    with pytest.raises(pjpeg.LosslessUnavailable):
        pjpeg.patch_jpeg_blocks(bytes(data), astronaut, face_mask)


def test_wrong_shapes_are_caller_errors(astronaut, face_mask):
    data = encode(astronaut)
    with pytest.raises(ValueError):
        pjpeg.patch_jpeg_blocks(data, astronaut[:100], face_mask)
    with pytest.raises(ValueError):
        pjpeg.patch_jpeg_blocks(data, astronaut, face_mask[:, :100])


def test_changed_block_mask_rounds_up_partial_blocks():
    alpha = np.zeros((20, 17))
    alpha[19, 16] = 0.1
    blocks = pjpeg.changed_block_mask(alpha, (8, 8))
    assert blocks.shape == (3, 3)
    assert blocks.sum() == 1 and blocks[2, 2]


@pytest.mark.parametrize("block", [(8, 8), (16, 16), (8, 16), (16, 8)])
@pytest.mark.parametrize("shape", [(296, 581), (37, 53), (1, 1), (100, 17)])
def test_changed_block_mask_marks_exactly_the_blocks_with_a_change(shape, block):
    rng = np.random.default_rng(sum(shape) + block[1])
    alpha = (rng.random(shape) < 0.002) * rng.random(shape).astype(np.float32)
    blocks = pjpeg.changed_block_mask(alpha, block)
    bh, bw = block
    expected = np.array([[alpha[y:y + bh, x:x + bw].any() for x in range(0, shape[1], bw)]
                         for y in range(0, shape[0], bh)])
    assert np.array_equal(blocks, expected)
    assert np.array_equal(pjpeg.changed_block_mask(alpha > 0, block), expected)


_CONCURRENT_PATCHING = """
import io, sys, threading
import numpy as np
import skimage.data
from PIL import Image
from pii_blur import jpeg
pixels = np.tile(skimage.data.astronaut(), (4, 4, 1))
exif = Image.Exif()
exif[0x010E] = "a description"
buffer = io.BytesIO()
Image.fromarray(pixels).save(buffer, "JPEG", quality=90, exif=exif.tobytes())
# Many large APP9 segments: jpeglib copies every marker into its C globals, the racy part.
segment = bytes([0xFF, 0xE9]) + (60002).to_bytes(2, "big") + bytes(60000)
source = buffer.getvalue()[:2] + segment * 12 + buffer.getvalue()[2:]
mask = np.zeros(pixels.shape[:2], bool)
mask[200:208, 240:248] = True   # one block: the time goes to jpeglib's reads and writes
blurred = pixels.copy()
blurred[mask] = 128
expected, _ = jpeg.patch_jpeg_blocks(source, blurred, mask)
results = []
def patch():
    for _ in range(8):
        results.append(jpeg.patch_jpeg_blocks(source, blurred, mask)[0] == expected)
threads = [threading.Thread(target=patch) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
sys.exit(0 if len(results) == 24 and all(results) else 1)
"""


def test_concurrent_block_patching_in_threads_neither_crashes_nor_differs():
    """Beam's multi_threading workers patch JPEGs at the same time in one process. jpeglib keeps
    the markers it reads in C globals (without pii_blur.jpeg's lock this failed 4 runs in 4),
    so the patching runs in a subprocess that must exit cleanly with every output identical."""
    import sys

    result = subprocess.run([sys.executable, "-c", _CONCURRENT_PATCHING], capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
