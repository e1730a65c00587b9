"""Seconds per panorama for the in-process core, stage by stage.

    python benchmarks/pano_seconds.py IMAGE [IMAGE ...] [--repeats 3] [--threads 2]
        [--projection auto|equirectangular|perspective]

Runs decode, face detection, plate detection and blur+encode+metadata on each
image `--repeats` times and prints the median of each stage. This is the work
one worker does per file; the CLI adds matching, writing and Beam overhead.
`--projection perspective` runs each detector once on the whole image, the
others search the sphere through overlapping views (sphere.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

from pii_blur import anonymize, imageio
from pii_blur.metadata import MetadataWriter
from pii_blur.models import DetectorConfig, create_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per model")
    parser.add_argument("--projection", default="auto", choices=anonymize.PROJECTIONS)
    args = parser.parse_args()
    config = DetectorConfig(min_probability=0.4, threads=args.threads)
    detectors = {name: create_detector(name, config) for name in ("onnx-centerface", "onnx-ppocr-plate")}
    with MetadataWriter() as metadata:
        for path in args.images:
            data = open(path, "rb").read()
            stages = {"decode": [], **{name: [] for name in detectors}, "blur_encode": [], "total": []}
            for _ in range(args.repeats):
                start = time.perf_counter()
                image = imageio.decode(data)
                projection = anonymize.projection_of(image, data, args.projection)
                stages["decode"].append(time.perf_counter() - start)
                found = anonymize.Found([], [], projection, [] if projection == "equirectangular" else None)
                for name, detector in detectors.items():
                    t = time.perf_counter()
                    part = anonymize.detect(image, [detector], {"face", "plate"}, projection)
                    stages[name].append(time.perf_counter() - t)
                    found.to_blur += part.to_blur
                    found.near_misses += part.near_misses
                    if part.on_sphere is not None:
                        found.on_sphere += part.on_sphere
                t = time.perf_counter()
                if found.to_blur:
                    anonymize.render_blurred(image, found, data, metadata)
                stages["blur_encode"].append(time.perf_counter() - t)
                stages["total"].append(time.perf_counter() - start)
            medians = "  ".join(f"{k} {statistics.median(v):.2f}s" for k, v in stages.items())
            labels = [d.label for d in found.to_blur]
            print(f"{path} {image.width}x{image.height} {projection}: {medians}  "
                  f"({labels.count('face')} faces, {labels.count('plate')} plates)")


if __name__ == "__main__":
    main()
