"""Benchmark: block-wise JPEG patching (pii_blur.jpeg) against a full re-encode.

    python benchmarks/lossless_jpeg.py DATA_DIR [--verify] [--limit N]

For every JPEG under DATA_DIR (found by content, not by name) the script blurs
the union of three fixed boxes (one central, two off-centre, about 2% of the
area in all), then prints one line per image:

- size: output/input size of the whole file, and of the entropy-coded data
  alone (the whole-file ratio also counts the EXIF thumbnail and MPF
  previews that were replaced or removed);
- blocks: share of DCT blocks (all components) whose coefficients changed,
  against the share of pixels that the blur changed;
- time: patch_jpeg_blocks (coefficient read, DCT, re-encode) and pictures.clean, then
  a full Pillow encode at quality 95 with the source's chroma subsampling, then
  the source-table encode of imageio.encode, all from already-decoded pixels;
- previews: EXIF thumbnail / MPF preview / trailer bytes in the source, and
  the leak check on the output: no MPF segment, nothing after EOI, no byte run
  of the old thumbnail or preview, and no embedded JPEG except the new thumbnail.

--verify also re-reads both files' coefficients with jpeglib and checks that
every block outside the mask is bit-identical (slow on panoramas).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image, JpegImagePlugin

from pii_blur import imageio, pictures
from pii_blur import jpeg as pjpeg
from pii_blur import jpeg_markers as markers
from pii_blur.blur import blur_detections
from pii_blur.types import Detection

# Boxes as fractions of width and height: x1, y1, x2, y2.
BOXES = ((0.46, 0.42, 0.54, 0.58), (0.20, 0.55, 0.25, 0.63), (0.70, 0.45, 0.73, 0.51))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", help="folder searched recursively for JPEGs")
    parser.add_argument("--verify", action="store_true",
                        help="check coefficients outside the mask with jpeglib (default: off)")
    parser.add_argument("--limit", type=int, default=0, help="stop after N images (default: 0, all)")
    return parser.parse_args(argv)


def find_jpegs(folder: str) -> list[str]:
    found = []
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                if imageio.sniff_format(handle.read(32)) == "jpeg":
                    found.append(path)
    return sorted(found)


def blur(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = pixels.shape[:2]
    detections = [Detection("face", 1.0, (x1 * width, y1 * height, x2 * width, y2 * height))
                  for x1, y1, x2, y2 in BOXES]
    blurred = blur_detections(pixels, detections)
    return blurred, pjpeg.changed_pixel_mask(pixels, blurred)


def embedded_pictures(data: bytes) -> dict:
    """What pictures of the scene a JPEG carries besides the primary image."""
    layout = markers.parse_layout(data)
    found = {"thumbnail": None, "mpf": False, "trailer": len(data) - layout.eoi_end}
    for seg in layout.header:
        body = seg.payload(data)
        if seg.marker == 0xE2 and body.startswith(b"MPF\x00"):
            found["mpf"] = True
        if seg.marker == 0xE1 and body.startswith(b"Exif\x00"):
            thumb = pictures._find_exif_thumbnail(bytearray(body[6:]))
            if thumb:
                offset, length = thumb[4], thumb[5]
                found["thumbnail"] = body[6 + offset:6 + offset + length]
    return found


def leaks(source: bytes, output: bytes, new_thumbnail: bytes | None) -> list[str]:
    """Every way the output could still show the unblurred scene."""
    problems = []
    before, after = embedded_pictures(source), embedded_pictures(output)
    if after["mpf"]:
        problems.append("MPF segment")
    if after["trailer"]:
        problems.append(f"{after['trailer']} bytes after EOI")
    old = before["thumbnail"]
    if old and old[len(old) // 2:len(old) // 2 + 64] in output:
        problems.append("old EXIF thumbnail bytes")
    if after["thumbnail"] not in (None, new_thumbnail):
        problems.append("unexpected EXIF thumbnail")
    if before["trailer"]:
        trailer = source[len(source) - before["trailer"]:]
        if trailer[len(trailer) // 2:len(trailer) // 2 + 64] in output:
            problems.append("old MPF preview bytes")
    problems += [f"embedded picture: {p.describe()}" for p in pictures.find(output) if p.data != new_thumbnail]
    return problems


def full_encode(image: imageio.DecodedImage, blurred: np.ndarray) -> tuple[bytes, float]:
    out = Image.fromarray(blurred)
    sampling = JpegImagePlugin.get_sampling(image.source)
    options = {"subsampling": sampling} if sampling >= 0 else {}
    buffer = io.BytesIO()
    started = time.perf_counter()
    out.save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue(), time.perf_counter() - started


def verify_outside_mask(source: bytes, output: bytes, mask: np.ndarray) -> bool:
    import jpeglib

    with tempfile.TemporaryDirectory() as folder:
        arrays = []
        for name, data in (("in.jpg", source), ("out.jpg", output)):
            path = os.path.join(folder, name)
            with open(path, "wb") as handle:
                handle.write(data)
            jpeg = jpeglib.read_dct(path)
            jpeg.load()
            arrays.append([c for c in (jpeg.Y, jpeg.Cb, jpeg.Cr) if c is not None])
    frame = markers.parse_frame(source, markers.parse_layout(source))
    grid = pjpeg._Grid.of(frame)
    for (v, h), old, new in zip(grid.factors, *arrays):
        touched = pjpeg.changed_block_mask(mask, (grid.mcu_h // v, grid.mcu_w // h))
        touched = touched[:old.shape[0], :old.shape[1]]
        if np.any(old[~touched] != new[~touched]):
            return False
    return True


def run_one(path: str, verify: bool) -> dict:
    with open(path, "rb") as handle:
        source = handle.read()
    image = imageio.decode(source)
    blurred, mask = blur(image.pixels)
    found = embedded_pictures(source)
    thumbnail = imageio.encode_thumbnail(imageio.to_rgb8(blurred)) if found["thumbnail"] else None
    row = {"name": os.path.relpath(path), "size": f"{image.width}x{image.height}",
           "area": float(mask.mean()), "thumbnail": found["thumbnail"] is not None,
           "mpf": found["mpf"], "trailer": found["trailer"]}
    full, row["t_q95"] = full_encode(image, blurred)
    row["q95_ratio"] = len(full) / len(source)
    started = time.perf_counter()
    imageio.encode(image, blurred)
    row["t_source_tables"] = time.perf_counter() - started
    try:
        started = time.perf_counter()
        patched, stats = pjpeg.patch_jpeg_blocks(source, blurred, mask)
        output, _ = pictures.clean(patched, thumbnail)
        stats["seconds"] = time.perf_counter() - started
    except pjpeg.LosslessUnavailable as error:
        row["fallback"] = str(error)
        return row
    old, new = markers.parse_layout(source), markers.parse_layout(output)
    row.update(ratio=len(output) / len(source),
               scan_ratio=(new.eoi_end - new.scan_start) / (old.eoi_end - old.scan_start),
               blocks=stats["blocks_changed"] / stats["blocks_total"], t_patch=stats["seconds"],
               timings=stats["timings"], encoder=stats["encoder"], leaks=leaks(source, output, thumbnail))
    if verify:
        row["verified"] = verify_outside_mask(source, output, mask)
    return row


def print_row(row: dict) -> None:
    if "fallback" in row:
        print(f"{row['name']}: FALLBACK ({row['fallback']})")
        return
    previews = ",".join(k for k in ("thumbnail", "mpf") if row[k]) or "-"
    laps = " ".join(f"{k}={v:.2f}" for k, v in row["timings"].items())
    print(f"{row['name']} {row['size']}: size {row['ratio']:.3f} (scans {row['scan_ratio']:.3f}, q95 "
          f"{row['q95_ratio']:.3f}) | blocks {100 * row['blocks']:.2f}% vs area {100 * row['area']:.2f}% | "
          f"patch {row['t_patch']:.2f}s ({laps}) vs q95 {row['t_q95']:.2f}s, source tables "
          f"{row['t_source_tables']:.2f}s | previews {previews} | leaks {','.join(row['leaks']) or 'none'}"
          + (f" | verified {row['verified']}" if "verified" in row else ""))


def print_summary(rows: list[dict]) -> None:
    done = [r for r in rows if "fallback" not in r]
    print(f"\n{len(rows)} JPEGs, {len(done)} patched, {len(rows) - len(done)} fell back")
    if not done:
        return
    def spread(key):
        values = [r[key] for r in done]
        return f"median {statistics.median(values):.3f} [min {min(values):.3f}, max {max(values):.3f}]"
    print(f"file size ratio {spread('ratio')}; entropy-coded data ratio {spread('scan_ratio')}; "
          f"q95 re-encode ratio {spread('q95_ratio')}")
    print(f"blocks changed {spread('blocks')} vs area blurred {spread('area')}")
    print(f"seconds: patch {spread('t_patch')}; q95 encode {spread('t_q95')}; "
          f"source-table encode {spread('t_source_tables')}")
    print(f"with EXIF thumbnail: {sum(r['thumbnail'] for r in rows)}; with MPF preview: "
          f"{sum(r['mpf'] for r in rows)}; with bytes after EOI: {sum(bool(r['trailer']) for r in rows)}; "
          f"outputs with a leak: {sum(bool(r['leaks']) for r in done)}")
    if any("verified" in r for r in done):
        print(f"coefficients outside the mask bit-identical: {sum(r.get('verified', False) for r in done)}"
              f"/{len(done)}")


def main(argv=None) -> int:
    args = parse_args(argv)
    paths = find_jpegs(args.data_dir)
    if args.limit:
        paths = paths[:args.limit]
    rows = []
    for path in paths:
        rows.append(run_one(path, args.verify))
        print_row(rows[-1])
        sys.stdout.flush()
    print_summary(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
