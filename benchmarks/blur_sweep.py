"""Re-cover a finished run's detections with other cover settings, judged as blur_eval.py judges them.

    python benchmarks/blur_sweep.py BLUR_EVAL_PY DATA_DIR REPORT [--mode blur] \
        --style '{"face": {"min_sigma_px": 3, "margin_px": 2}}' [--style ...]

Detection is the slow part, and a cover setting does not change what is
detected, so one run's detections (REPORT, the pii-blur-report.jsonl of a
run over DATA_DIR, e.g. kept by `blur_eval.py --work`) are covered again
with each --style (pii_blur.blur.BlurStyle fields per label, overriding
pii_blur.blur.DEFAULT_STYLES) and judged with the functions of the
black-box tool BLUR_EVAL_PY (/work/shared/tools/blur_eval.py), imported by
path: face / plate blur-recall by box-height bin and subfolder, and
collateral. It is for choosing numbers quickly; final numbers come from
blur_eval.py running the real CLI (outputs here are lossless, not patched
JPEG blocks).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import json
import os
import sys
import tempfile

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pii_blur import blur, imageio  # noqa: E402
from pii_blur.types import Detection  # noqa: E402


def load_tool(path: str):
    """The blur_eval.py module at `path`."""
    spec = importlib.util.spec_from_file_location("blur_eval", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report_detections(report_path: str) -> dict[str, list[Detection]]:
    """Detections to blur per input, keyed by the path's last components as in labels.json."""
    found = {}
    for line in open(report_path):
        record = json.loads(line)
        if "path" in record and "status" in record:
            found[record["path"].removeprefix("file://")] = [Detection.from_json(d) for d in record["detections"]]
    return found


def styles_with(overrides: dict) -> dict[str, blur.BlurStyle]:
    """DEFAULT_STYLES with the given fields replaced, per label."""
    styles = dict(blur.DEFAULT_STYLES)
    for label, fields in overrides.items():
        if "axis_scale" in fields:
            fields = {**fields, "axis_scale": tuple(fields["axis_scale"])}
        styles[label] = dataclasses.replace(styles[label], **fields)
    return styles


def judge(tool, data_dir: str, labels: dict, found: dict, mode: str, scratch: str) -> dict:
    """Recall per group and collateral of one cover setting (the current blur.DEFAULT_STYLES)."""
    hits, totals = collections.Counter(), collections.Counter()
    lost_area = measurable_area = 0.0
    for relative, gt in sorted(labels.items()):
        source = os.path.join(data_dir, relative)
        detections = next((v for k, v in found.items() if k.endswith("/" + relative)), [])
        image = imageio.decode(open(source, "rb").read())
        covered = blur.blur_detections(image.pixels, detections, mode)
        if covered.ndim == 3:
            covered = cv2.cvtColor(covered[..., :3], cv2.COLOR_RGB2BGR)
        out_path = os.path.join(scratch, "out.png")
        cv2.imwrite(out_path, covered)
        g_in, g_out = tool.read_gray(source), tool.read_gray(out_path)
        height, width = g_in.shape
        regions = [tool.eval_region(box, width, height) for box in gt]
        lost, measurable = tool.collateral(g_in, g_out, regions)
        lost_area, measurable_area = lost_area + lost, measurable_area + measurable
        for box, region in zip(gt, regions):
            box_lost, box_measurable = tool.box_lost_share(g_in, g_out, region)
            hit = box_measurable > 0 and box_lost >= tool.BOX_SHARE * box_measurable
            for key in ("all", tool.height_bin(box), relative.split("/")[0]):
                totals[box[4], key] += 1
                hits[box[4], key] += hit
    recall = {f"{label}/{key}": hits[label, key] / totals[label, key] for label, key in totals}
    return {"recall": recall, "collateral": lost_area / measurable_area if measurable_area else float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tool", help="path of blur_eval.py")
    parser.add_argument("data_dir", help="labelled folder (labels.json)")
    parser.add_argument("report", help="pii-blur-report.jsonl of a run over data_dir")
    parser.add_argument("--mode", choices=blur.MODES, default=blur.DEFAULT_MODE, help="cover mode (default: blur)")
    parser.add_argument("--style", action="append", default=[],
                        help='JSON {label: {BlurStyle field: value}}, repeatable (default: the defaults only)')
    args = parser.parse_args()
    tool = load_tool(args.tool)
    labels = json.load(open(os.path.join(args.data_dir, "labels.json")))
    found = report_detections(args.report)
    defaults = dict(blur.DEFAULT_STYLES)
    with tempfile.TemporaryDirectory(prefix="blur-sweep-") as scratch:
        for text in args.style or ["{}"]:
            styles = styles_with(json.loads(text))
            blur.DEFAULT_STYLES.clear()
            blur.DEFAULT_STYLES.update(styles)
            result = judge(tool, args.data_dir, labels, found, args.mode, scratch)
            blur.DEFAULT_STYLES.clear()
            blur.DEFAULT_STYLES.update(defaults)
            cells = "  ".join(f"{key}={value:.3f}" for key, value in sorted(result["recall"].items()))
            print(f"{args.mode} {text}: {cells}  collateral={result['collateral']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
