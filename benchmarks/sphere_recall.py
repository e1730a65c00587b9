"""Blur-recall of 360° detection, by pitch band and across the seam, and seconds per panorama.

Usage:
    python benchmarks/sphere_recall.py PANO_DIR [--layouts LAYOUT[@BAND/RING],...] [--no-whole] [--limit N]
        [--threads 2]

PANO_DIR is made by benchmarks/make_panoramas.py (its objects.json). For each view layout of
pii_blur.sphere.plan_views, and for the baseline of running the detectors
once on the whole equirect image, it runs detection and blur_mask and
prints blur-recall per band (|pitch| < 30°, 30-55°, > 55°, and objects
across the seam) and seconds per panorama (detection + mask).

A layout may carry resolutions in pixels per degree, band/rings:
`band50x3+ring72x4+coarse60@8/5.76` (default: the panorama's own).

Blur-recall: a ground-truth object counts as blurred when at least 80% of the
pixels of its equirect box(es) have blur alpha >= 0.5. "footprint" recall
uses the object's exact footprint (the pre-image of its photo box) instead of
its bounding box, which near the poles is much larger than the object.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pii_blur import sphere  # noqa: E402
from pii_blur.models import DetectorConfig, create_detector  # noqa: E402

COVERED_FRACTION = 0.8
ALPHA_THRESHOLD = 0.5
BANDS = (("|p|<30", 0, 30), ("30-55", 30, 55), (">55", 55, 91))


def band_of(pitch_deg: float) -> str:
    for name, low, high in BANDS:
        if low <= abs(pitch_deg) < high:
            return name
    return BANDS[-1][0]


def gt_blurred(obj: dict, mask: np.ndarray) -> tuple[bool, bool]:
    """(box criterion, footprint criterion) for one ground-truth object."""
    height, width = mask.shape
    boxes = obj.get("boxes") or [obj["box"]]
    covered = total = 0
    for x1, y1, x2, y2 in boxes:
        block = mask[y1:y2, x1:x2]
        covered += int((block >= ALPHA_THRESHOLD).sum())
        total += block.size
    by_box = total > 0 and covered >= COVERED_FRACTION * total
    view = sphere.View(**obj["view"])
    bx1, by1, bx2, by2 = obj["box_in_view"]
    covered = total = 0
    for x1, y1, x2, y2 in boxes:
        ys = np.arange(y1, y2) + 0.5
        xs = np.arange(x1, x2) + 0.5
        directions = sphere.equirect_pixel_to_direction(xs[None, :], ys[:, None], width, height)
        u, v, valid = sphere.direction_to_view_pixel(view, directions)
        inside = valid & (u >= bx1) & (u < bx2) & (v >= by1) & (v < by2)
        covered += int((inside & (mask[y1:y2, x1:x2] >= ALPHA_THRESHOLD)).sum())
        total += int(inside.sum())
    by_footprint = total > 0 and covered >= COVERED_FRACTION * total
    return by_box, by_footprint


def size_px(obj: dict, pano_width: int) -> float:
    """The object's shorter side in pixels at the panorama's own resolution."""
    view = sphere.View(**obj["view"])
    x1, y1, x2, y2 = obj["box_in_view"]
    return min(x2 - x1, y2 - y1) * (pano_width / (2 * math.pi)) / view.focal_px


def planned_views(method: str, width: int, height: int) -> list:
    """Views for "LAYOUT" or "LAYOUT@BAND_PX_PER_DEG/RING_PX_PER_DEG"."""
    layout, _, resolution = method.partition("@")
    if not resolution:
        return sphere.plan_views(width, height, layout)
    band, ring = (float(value) * 360.0 / width for value in resolution.split("/"))
    return sphere.plan_views(width, height, layout, scale=band, ring_scale=ring)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pano_dir")
    parser.add_argument("--layouts", default=sphere.DEFAULT_LAYOUT,
                        help=f"comma-separated view layouts (default {sphere.DEFAULT_LAYOUT}; "
                             f"choose from {sorted(sphere.LAYOUTS)})")
    parser.add_argument("--no-whole", action="store_true", help="skip the whole-equirect baseline (default: run it)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N panoramas (default 0: all)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    parser.add_argument("--labels", default="face,plate", help="labels to detect and score (default face,plate)")
    parser.add_argument("--min-size", type=float, default=12.0,
                        help="also report recall for objects at least this many pano pixels across (default 12)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with open(os.path.join(args.pano_dir, "objects.json")) as f:
        labels = json.load(f)
    names = sorted(labels["panoramas"])
    if args.limit:
        names = names[:args.limit]
    config = DetectorConfig(min_probability=0.4, threads=args.threads)
    wanted = {obj["label"] for name in names for obj in labels["panoramas"][name]} & set(args.labels.split(","))
    detectors = [create_detector("onnx-centerface", config)]
    if "plate" in wanted:
        detectors.append(create_detector("onnx-ppocr-plate", config))

    def detect_views(images):
        results = [[] for _ in images]
        for detector in detectors:
            for result, found in zip(results, detector.detect(images, rescale=False)):  # as on panoramas
                # Detectors also return near misses (down to half their threshold); blur only the rest.
                result.extend(d for d in found if d.score >= detector.threshold)
        return results

    methods = [layout for layout in args.layouts.split(",") if layout]
    if not args.no_whole:
        methods.append("whole")
    # method -> key -> [blurred by box, blurred by footprint, total]
    tallies = {m: collections.defaultdict(lambda: [0, 0, 0]) for m in methods}
    seconds = collections.defaultdict(float)
    for name in names:
        bgr = cv2.imread(os.path.join(args.pano_dir, name), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        height, width = rgb.shape[:2]
        for method in methods:
            start = time.perf_counter()
            if method == "whole":
                views = [sphere.View(0.0, 0.0, 360.0, width, height, kind=sphere.EQUIRECT)]
            else:
                views = planned_views(method, width, height)
            found = sphere.detect_on_sphere(rgb, detect_views, views)
            mask = sphere.blur_mask(height, width, found)
            seconds[method] += time.perf_counter() - start
            for obj in labels["panoramas"][name]:
                if obj["label"] not in wanted:
                    continue
                by_box, by_footprint = gt_blurred(obj, mask)
                keys = [f"{obj['label']} {band_of(obj['pitch_deg'])}"]
                if obj["seam"]:
                    keys.append(f"{obj['label']} seam")
                if size_px(obj, width) >= args.min_size:
                    keys += [f"{key} >={args.min_size:g}px" for key in keys]
                for key in keys:
                    tally = tallies[method][key]
                    tally[0] += by_box
                    tally[1] += by_footprint
                    tally[2] += 1
            logging.info("%s %s: %d detections, %.1fs", name, method, len(found), time.perf_counter() - start)

    print(f"\n{len(names)} panoramas {width}x{height}; blur-recall by box (by exact footprint), objects")
    keys = sorted({key for m in methods for key in tallies[m]})
    print(f"{'':28s}" + "".join(f"{m:>26s}" for m in methods))
    for key in keys:
        row = f"{key:28s}"
        for method in methods:
            box, footprint, total = tallies[method][key]
            row += f"{100 * box / max(total, 1):9.1f} ({100 * footprint / max(total, 1):5.1f}) n={total:<5d}"
        print(row)
    print(f"{'seconds / panorama':28s}" + "".join(f"{seconds[m] / len(names):26.2f}" for m in methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
