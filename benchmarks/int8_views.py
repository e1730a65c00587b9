"""Seconds per view of each vendored model, int8 against fp32, at the sizes the pipeline runs.

    python benchmarks/int8_views.py [--repeats 7] [--threads 1]

For each model and network input size: one ONNX Runtime session per
precision (the same files and session options the detectors use), fed the
astronaut photo resized to that size and preprocessed as the detector does.
Repeats are interleaved (every model, size and precision once per round), so
the machine's other load falls on all alike; prints the median seconds per
view and the int8 speed-up.

Sizes (height x width of the network input):
- 1440x1440: a panorama view (pano_views at the default band resolution);
- 736x1312: a 1280x720 photo for the plate detector (short side to 736);
- 864x1280: a 400x266 crowd photo for CenterFace (long side to 1280);
- 320x480: the 400x266 crowd photo for the plate detector at its own resolution.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
import skimage.data

from pii_blur.models import centerface, ppocr_plate
from pii_blur.models.base import onnx_session
from pii_blur.models.weights import read_vendored, weights_for

# model -> (fp32 file, preprocess, network input sizes (height, width))
MODELS = {
    "centerface": ("centerface_dynamic.onnx", centerface.preprocess, [(1440, 1440), (864, 1280)]),
    "ppocr_det": ("ppocrv4_det_folded.onnx", ppocr_plate.preprocess, [(1440, 1440), (736, 1312), (320, 480)]),
}
PRECISIONS = ("fp32", "int8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default: 7)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default: 1)")
    args = parser.parse_args()
    photo = skimage.data.astronaut()
    cases = []
    for model, (fp32_name, preprocess, sizes) in MODELS.items():
        sessions = {p: onnx_session(read_vendored(weights_for(fp32_name, p)), args.threads, "cpu") for p in PRECISIONS}
        for height, width in sizes:
            blob = preprocess(cv2.resize(photo, (width, height)), False)
            for precision, session in sessions.items():
                feed = {session.get_inputs()[0].name: blob}
                session.run(None, feed)   # warm-up
                cases.append(((model, f"{height}x{width}", precision), session, feed))
    seconds: dict = {key: [] for key, _, _ in cases}
    for _ in range(args.repeats):
        for key, session, feed in cases:
            start = time.perf_counter()
            session.run(None, feed)
            seconds[key].append(time.perf_counter() - start)
    print(f"median seconds per view, {args.repeats} interleaved repeats, {args.threads} thread(s)")
    print(f"{'model':<11} {'size':>10} {'fp32 s':>8} {'int8 s':>8} {'speed-up':>9}")
    for model, (_, _, sizes) in MODELS.items():
        for height, width in sizes:
            size = f"{height}x{width}"
            fp32, int8 = (statistics.median(seconds[model, size, p]) for p in PRECISIONS)
            print(f"{model:<11} {size:>10} {fp32:>8.3f} {int8:>8.3f} {fp32 / int8:>8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
