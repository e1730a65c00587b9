"""Blur-recall and collateral of the pii-blur CLI on a labelled data folder.

    python benchmarks/eval.py DATA_DIR [--min-probability 40] [--workers 2]

DATA_DIR holds images and a labels.json mapping each image path (relative to
DATA_DIR) to boxes [x1, y1, x2, y2, "face" | "plate"] in stored pixels.
The CLI is run on DATA_DIR; the blur mask of each output is rebuilt from the
report's detections with the same code that blurred it.

A labelled box counts as blurred when at least COVERED_FRACTION of its pixels
get blur strength >= 0.5. Collateral is the share of image area blurred
outside every labelled box (mean over images).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from pii_blur.blur import blur_mask
from pii_blur.types import Detection

COVERED_FRACTION = 0.8
SIZE_BINS = ((0, 16), (16, 32), (32, 64), (64, 128), (128, 10**9))


def size_bin(height: float) -> str:
    for low, high in SIZE_BINS:
        if low <= height < high:
            return f"{low}-{high}px" if high < 10**9 else f">={low}px"
    return "?"


def run_cli(data_dir: str, out_dir: str, min_probability: int, workers: int, extra: list[str]) -> float:
    started = time.time()
    command = [sys.executable, "-m", "pii_blur.cli", data_dir, out_dir, str(min_probability),
               "--workers", str(workers), *extra]
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - started


def evaluate(data_dir: str, report_path: str) -> dict:
    labels = json.load(open(os.path.join(data_dir, "labels.json")))
    reports = {}
    for line in open(report_path):
        record = json.loads(line)
        if "path" in record:
            reports[os.path.relpath(record["path"].removeprefix("file://"), os.path.abspath(data_dir))] = record
    found = collections.Counter()
    total = collections.Counter()
    collateral = []
    statuses = collections.Counter()
    for relative, boxes in sorted(labels.items()):
        record = reports.get(relative)
        group = relative.split("/")[0]
        statuses[record["status"] if record else "missing"] += 1
        width, height = Image.open(os.path.join(data_dir, relative)).size
        detections = [Detection(d["label"], d["score"], tuple(d["box"])) for d in (record or {}).get("detections", [])]
        mask = blur_mask(height, width, detections) >= 0.5 if detections else np.zeros((height, width), bool)
        labelled = np.zeros((height, width), bool)
        for x1, y1, x2, y2, label in boxes:
            x1, y1 = max(int(x1), 0), max(int(y1), 0)
            x2, y2 = min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)
            if x2 <= x1 or y2 <= y1:
                continue
            labelled[y1:y2, x1:x2] = True
            hit = mask[y1:y2, x1:x2].mean() >= COVERED_FRACTION
            for key in ((label, "all"), (label, group), (label, size_bin(y2 - y1))):
                total[key] += 1
                found[key] += hit
        collateral.append((mask & ~labelled).sum() / mask.size)
    return {"found": found, "total": total, "collateral": float(np.mean(collateral)) if collateral else 0.0,
            "statuses": statuses, "images": len(labels)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--min-probability", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report", help="evaluate this existing report instead of running the CLI")
    parser.add_argument("--keep", help="write outputs here (default: a temporary folder)")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more CLI arguments, after --")
    args = parser.parse_args()
    seconds = None
    with tempfile.TemporaryDirectory(prefix="pii-blur-eval-") as scratch:
        report = args.report
        if report is None:
            out_dir = args.keep or os.path.join(scratch, "out")
            extra = [a for a in args.extra if a != "--"]
            seconds = run_cli(args.data_dir, out_dir, args.min_probability, args.workers, extra)
            report = os.path.join(out_dir, "pii-blur-report.jsonl")
        result = evaluate(args.data_dir, report)
    print(f"data: {args.data_dir}  images: {result['images']}  statuses: {dict(result['statuses'])}")
    if seconds is not None:
        print(f"wall time: {seconds:.1f} s ({seconds / max(result['images'], 1):.2f} s/image, "
              f"{args.workers} workers, includes start-up)")
    print(f"{'class':6} {'subset':18} {'recall':>7} {'found':>6} {'boxes':>6}")
    for key in sorted(result["total"]):
        label, subset = key
        print(f"{label:6} {subset:18} {result['found'][key] / result['total'][key]:7.3f} "
              f"{result['found'][key]:6d} {result['total'][key]:6d}")
    print(f"collateral (non-PII area blurred, mean share per image): {result['collateral']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
