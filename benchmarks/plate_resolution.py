"""Plate recall against seconds for the plate detector's photo resolution policy.

    python benchmarks/plate_resolution.py PLATES_DIR [--short-sides 720,360,266]
        [--policies 0,480,576,736] [--stride 2] [--precision fp32]

PLATES_DIR is a labelled folder (labels.json, boxes "plate"), e.g.
../shared/data/plates. Each photo is shown to the detector at several sizes
(--short-sides: downscaled so its short side is that many pixels, the
labelled boxes with it; 720 is about the stored size), since the plates in
small photos are small. Each --policies value is a MIN_SHORT_SIDE: the photo
is upscaled until its short side reaches it (0: never upscaled).

A labelled plate counts as found when a blurred detection (score >= the
detector's threshold at MIN_PERCENTAGE_PROBABILITY 40) covers at least half
of its box. This is a proxy for blur recall (benchmarks/eval.py and
../shared/tools/blur_eval.py judge the pixels); it is for ranking policies.
Policies are interleaved photo by photo, so the machine's other load falls on
all alike; seconds are the median per photo of detect() on one thread. The
last policy is the reference: each other one's "lost" and "gained" count the
plates that the reference found and it did not, and the other way round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from pii_blur.models import ppocr_plate
from pii_blur.models.base import DetectorConfig


def covered(box, detections) -> bool:
    x1, y1, x2, y2 = box
    area = max(x2 - x1, 1e-6) * max(y2 - y1, 1e-6)
    for d in detections:
        dx1, dy1, dx2, dy2 = d.box
        inter = max(0.0, min(x2, dx2) - max(x1, dx1)) * max(0.0, min(y2, dy2) - max(y1, dy1))
        if inter >= 0.5 * area:
            return True
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plates_dir", type=Path)
    parser.add_argument("--short-sides", default="720,360,266",
                        help="photo short sides to test at (default: 720,360,266)")
    parser.add_argument("--policies", default="0,480,576,736",
                        help="MIN_SHORT_SIDE values (default: 0,480,576,736)")
    parser.add_argument("--stride", type=int, default=2, help="every n-th labelled photo (default: 2)")
    parser.add_argument("--precision", default="fp32", help="detector weights (default: fp32)")
    args = parser.parse_args()
    short_sides = [int(v) for v in args.short_sides.split(",")]
    policies = [int(v) for v in args.policies.split(",")]
    labels = json.loads((args.plates_dir / "labels.json").read_text())
    detector = ppocr_plate.PlateDetector(DetectorConfig(min_probability=0.4, threads=1, precision=args.precision))
    found = {(s, p): set() for s in short_sides for p in policies}
    seconds = {(s, p): [] for s in short_sides for p in policies}
    total = 0
    for name in sorted(labels)[::args.stride]:
        boxes = [b[:4] for b in labels[name] if b[4] == "plate"]
        if not boxes:
            continue
        bgr = cv2.imread(str(args.plates_dir / name), cv2.IMREAD_COLOR)
        total += len(boxes)
        for short in short_sides:
            factor = min(1.0, short / min(bgr.shape[:2]))
            rgb = cv2.cvtColor(cv2.resize(bgr, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
                               if factor < 1 else bgr, cv2.COLOR_BGR2RGB)
            for policy in policies:
                ppocr_plate.MIN_SHORT_SIDE = policy
                start = time.perf_counter()
                detections = [d for d in detector.detect([rgb])[0] if d.score >= detector.threshold]
                seconds[short, policy].append(time.perf_counter() - start)
                found[short, policy].update((name, index) for index, b in enumerate(boxes)
                                            if covered(np.array(b) * factor, detections))
    print(f"{total} labelled plates, {args.precision}; found share and median seconds per photo")
    print(f"{'short side':>10} {'MIN_SHORT_SIDE':>14} {'found':>7} {'recall':>7} {'lost':>5} {'gained':>6} "
          f"{'s/photo':>8}")
    for short in short_sides:
        reference = found[short, policies[-1]]
        for policy in policies:
            here = found[short, policy]
            print(f"{short:>10} {policy:>14} {len(here):>7} {len(here) / total:>7.3f} {len(reference - here):>5} "
                  f"{len(here - reference):>6} {statistics.median(seconds[short, policy]):>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
