"""Build time and size of the review page for a large report.

    python benchmarks/review_scale.py [--images 1000] [--width 640] [--height 480] [--page-size 200] [--keep DIR]

Synthesizes a run: `--images` real JPEG outputs (crops of scikit-image's
photos, each slightly different) and its report: 70% blurred, 20% copied,
5% skipped, 5% failed, one near miss in every fifth file, one 360° line with
a seam-split face. Then times `build_review` and prints the total bytes of
OUT_DIR, of index.html and of the largest page.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import tempfile
import time

import numpy as np
import skimage.data
from PIL import Image

from pii_blur import review


def photos() -> list[np.ndarray]:
    sources = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(),
               skimage.data.rocket(), np.dstack([skimage.data.camera()] * 3)]
    return [np.asarray(Image.fromarray(p).resize((1024, 768))) for p in sources]


def synthesize(folder: str, count: int, width: int, height: int) -> str:
    """Write `count` outputs and the report; returns the report's path."""
    rng = random.Random(0)
    sources = photos()
    lines = []
    for i in range(count):
        kind = rng.random()
        path = f"file:///photos/day{i % 7}/IMG_{i:05d}.jpg"
        name = os.path.join(folder, "out", f"day{i % 7}", f"IMG_{i:05d}.jpg")
        item = {"path": path, "status": "copied", "output": name, "reason": "", "size_bytes": 0,
                "detections": [], "near_misses": [], "timings": {"read": 0.001, "detect": 0.4}}
        if kind < 0.05:
            item.update(status="skipped", output=None, reason="not an image")
        elif kind < 0.10:
            item.update(status="failed", output=None, reason="ImageError: truncated JPEG")
        else:
            source = sources[i % len(sources)]
            x, y = rng.randrange(0, 1024 - width + 1), rng.randrange(0, 768 - height + 1)
            pixels = source[y:y + height, x:x + width]
            os.makedirs(os.path.dirname(name), exist_ok=True)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
            with open(name, "wb") as handle:
                handle.write(buffer.getvalue())
            item["size_bytes"] = buffer.tell()
            def box():
                w = rng.randrange(30, width // 3)
                bx, by = rng.randrange(0, width - w), rng.randrange(0, height - w)
                return [bx, by, bx + w, by + w]
            if kind < 0.80:
                item["status"] = "blurred"
                item["detections"] = [{"label": rng.choice(["face", "plate"]), "box": box(),
                                       "score": round(rng.uniform(0.4, 1), 4)} for _ in range(rng.randrange(1, 4))]
            if i % 5 == 0:
                item["near_misses"] = [{"label": "face", "score": round(rng.uniform(0.1, 0.2), 4), "box": box()}]
            if i == 1:
                item.update(status="blurred", projection="equirectangular", detections=[
                    {"label": "face", "score": 0.8, "boxes": [[width - 20, 40, width, 90], [0, 40, 25, 90]],
                     "yaw_deg": 179.0, "pitch_deg": 5.0}])
        lines.append(json.dumps(item))
    items = [json.loads(x) for x in lines]
    statuses = [item["status"] for item in items]
    labels = [d["label"] for item in items if item["status"] == "blurred" for d in item["detections"]]
    lines.append(json.dumps({"summary": True, "files": count,
                             **{s: statuses.count(s) for s in ("copied", "blurred", "skipped", "failed")},
                             "detections": {label: labels.count(label) for label in sorted(set(labels))},
                             "total_seconds": 400.0}))
    report = os.path.join(folder, "out", "pii-blur-report.jsonl")
    with open(report, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return report


def folder_bytes(folder: str) -> tuple[int, int]:
    total = files = 0
    for root, _, names in os.walk(folder):
        for name in names:
            total += os.path.getsize(os.path.join(root, name))
            files += 1
    return total, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="files in the report (default: 1000)")
    parser.add_argument("--width", type=int, default=640, help="output width in pixels (default: 640)")
    parser.add_argument("--height", type=int, default=480, help="output height in pixels (default: 480)")
    parser.add_argument("--page-size", type=int, default=200, help="entries per page (default: 200)")
    parser.add_argument("--keep", default=None, help="build in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = args.keep or temp
        report = synthesize(folder, args.images, args.width, args.height)
        out_dir = os.path.join(folder, "review")
        start = time.perf_counter()
        index = review.build_review(report, out_dir, page_size=args.page_size)
        seconds = time.perf_counter() - start
        total, files = folder_bytes(out_dir)
        pages = [os.path.join(out_dir, n) for n in os.listdir(out_dir) if n.endswith(".html")]
        largest = max(pages, key=os.path.getsize)
        print(f"{args.images} files ({args.width}x{args.height} outputs), page size {args.page_size}, "
              f"{os.cpu_count()} cores")
        print(f"build: {seconds:.2f} s ({1000 * seconds / args.images:.1f} ms per file)")
        print(f"OUT_DIR: {total / 1e6:.2f} MB in {files} files; index.html {os.path.getsize(index) / 1e3:.0f} kB; "
              f"{len(pages)} pages, largest {os.path.basename(largest)} {os.path.getsize(largest) / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
