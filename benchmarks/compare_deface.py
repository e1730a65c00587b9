"""pii-blur against deface on 360 panoramas: throughput and face blur-recall, in one run.

    python benchmarks/compare_deface.py DATA_DIR [--synthetic 6] [--real 6] [--repeats 3] [--workdir DIR]

DATA_DIR is the evaluation data folder (faces/, plates/, pano/). deface 1.5.0
is installed into its own throwaway virtual environment (it pulls
opencv-python, which must not touch ours). In the same run, on the same
files, it times:
- deface at its defaults, and at the threshold where its recall is best;
- pii-blur at its defaults (faces and plates; deface finds faces only),
on the real 5760x2880 panoramas in DATA_DIR/pano (cycled under new names up
to --real files, so that every worker has work to the end) and on synthetic
labelled 5760x2880 panoramas (benchmarks/make_panoramas.py, saved as JPEG q92).

Blur-recall (synthetic only): a labelled face or plate counts as blurred when
the high-frequency energy (mean |Laplacian|) of its exact footprint on the
sphere in the output is under half of the input's. The same rule for every tool.
Prints panoramas per minute (median of --repeats), blur-recall and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pii_blur import sphere  # noqa: E402

DEFACE_VERSION = "1.5.0"
DEFACE_THRESHOLDS = (0.2, 0.1, 0.05)   # 0.2 is deface's default
ENERGY_KEPT_MAX = 0.5
HERE = os.path.dirname(os.path.abspath(__file__))


def ensure_deface(venv: str) -> str:
    deface = os.path.join(venv, "bin", "deface")
    if not os.path.exists(deface):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", f"deface=={DEFACE_VERSION}",
                        "onnxruntime"], check=True)
    return deface


def make_synthetic(data_dir: str, out_dir: str, count: int) -> dict:
    pngs = os.path.join(out_dir, "png")
    subprocess.run([sys.executable, os.path.join(HERE, "make_panoramas.py"), data_dir, pngs,
                    "--count", str(count), "--width", "5760"], check=True, stdout=subprocess.DEVNULL)
    labels = json.load(open(os.path.join(pngs, "labels.json")))["panoramas"]
    jpegs = os.path.join(out_dir, "jpeg")
    os.makedirs(jpegs, exist_ok=True)
    renamed = {}
    for name, objects in labels.items():
        stem = os.path.splitext(name)[0] + ".jpg"
        cv2.imwrite(os.path.join(jpegs, stem), cv2.imread(os.path.join(pngs, name)), [cv2.IMWRITE_JPEG_QUALITY, 92])
        renamed[stem] = objects
    return {"folder": jpegs, "labels": renamed}


def real_panoramas(data_dir: str, out_dir: str, count: int) -> str:
    folder = os.path.join(out_dir, "real")
    os.makedirs(folder, exist_ok=True)
    sources = []
    for root, _, names in os.walk(os.path.join(data_dir, "pano")):
        for name in sorted(names):
            path = os.path.join(root, name)
            if name.lower().endswith((".jpg", ".jpeg")):
                image = cv2.imread(path, cv2.IMREAD_REDUCED_GRAYSCALE_8)
                if image is not None and image.shape[1] * 8 == 5760:
                    sources.append(path)
    for index in range(max(count, len(sources))):
        source = sources[index % len(sources)]
        shutil.copy(source, os.path.join(folder, f"{index:02d}-{os.path.basename(source)}"))
    return folder


def run_deface(deface: str, source: str, scratch: str, threshold: float) -> tuple[float, str]:
    """deface writes NAME_anonymized.EXT beside each input; run it on a copy."""
    work = tempfile.mkdtemp(dir=scratch)
    inputs = []
    for name in sorted(os.listdir(source)):
        shutil.copy(os.path.join(source, name), work)
        inputs.append(os.path.join(work, name))
    started = time.perf_counter()
    subprocess.run([deface, "--thresh", str(threshold), *inputs], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    for path in inputs:
        stem, ext = os.path.splitext(path)
        os.replace(f"{stem}_anonymized{ext}", path)   # output under the input's name
    return seconds, work


def run_pii_blur(source: str, scratch: str) -> tuple[float, str]:
    out = tempfile.mkdtemp(dir=scratch)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pii_blur.cli", source, out], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, out


def energy(image: np.ndarray, mask: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[mask].mean())


def blur_recall(source: str, output: str, labels: dict, label: str) -> float:
    hits = total = 0
    for name, objects in labels.items():
        before = cv2.imread(os.path.join(source, name))
        after = cv2.imread(os.path.join(output, name))
        height, width = before.shape[:2]
        for obj in objects:
            if obj["label"] != label:
                continue
            footprint = sphere.Footprint(sphere.View(**obj["view"]), tuple(obj["box_in_view"]), 1.0)
            detection = sphere.sphere_detection(label, [footprint], width, height)
            mask = sphere.blur_mask(height, width, [detection]) > 0.5
            if mask.sum() < 16:
                continue
            total += 1
            hits += energy(after, mask) < ENERGY_KEPT_MAX * energy(before, mask)
    return hits / max(total, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--synthetic", type=int, default=6, help="synthetic panoramas (default 6)")
    parser.add_argument("--real", type=int, default=6, help="real panoramas, cycled (default 6)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions, median reported (default 3)")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--deface-venv", default=os.path.join(tempfile.gettempdir(), "pii-blur-deface-venv"))
    args = parser.parse_args()
    scratch = args.workdir or tempfile.mkdtemp(prefix="pii-blur-vs-deface-")
    deface = ensure_deface(args.deface_venv)
    synthetic = make_synthetic(args.data_dir, scratch, args.synthetic)
    sets = {"synthetic": synthetic["folder"], "real": real_panoramas(args.data_dir, scratch, args.real)}

    def recalls(out: str) -> dict:
        return {label: blur_recall(synthetic["folder"], out, synthetic["labels"], label) for label in ("face", "plate")}

    # deface's best threshold, by face recall on the synthetic set.
    recall = {}
    for threshold in DEFACE_THRESHOLDS:
        _, out = run_deface(deface, synthetic["folder"], scratch, threshold)
        recall[f"deface t={threshold}"] = recalls(out)
    best = max(DEFACE_THRESHOLDS, key=lambda t: (recall[f"deface t={t}"]["face"], t))
    _, out = run_pii_blur(synthetic["folder"], scratch)
    recall["pii-blur"] = recalls(out)

    tools = {"deface default (t=0.2)": (lambda src: run_deface(deface, src, scratch, 0.2), "deface t=0.2"),
             f"deface best (t={best})": (lambda src: run_deface(deface, src, scratch, best), f"deface t={best}"),
             "pii-blur default": (lambda src: run_pii_blur(src, scratch), "pii-blur")}
    seconds = {(tool, name): [] for tool in tools for name in sets}
    for _ in range(args.repeats):        # interleaved, so machine noise hits every tool alike
        for name, folder in sets.items():
            for tool, (run, _) in tools.items():
                seconds[(tool, name)].append(run(folder)[0])
    counts = {name: len(os.listdir(folder)) for name, folder in sets.items()}
    print(f"{'tool':24} {'set':10} {'panos/min':>9} {'s/pano':>7} {'vs deface default':>17} {'vs deface best':>14} "
          f"{'face recall':>11} {'plate recall':>12}")
    for name in sets:
        base = statistics.median(seconds[("deface default (t=0.2)", name)])
        best_seconds = statistics.median(seconds[(f"deface best (t={best})", name)])
        for tool, (_, recall_key) in tools.items():
            median = statistics.median(seconds[(tool, name)])
            print(f"{tool:24} {name:10} {60 * counts[name] / median:9.2f} {median / counts[name]:7.2f} "
                  f"{base / median:16.2f}x {best_seconds / median:13.2f}x "
                  f"{recall[recall_key]['face']:11.3f} {recall[recall_key]['plate']:12.3f}")
    print("blur-recall (face, plate) on the synthetic panoramas:",
          ", ".join(f"{k} {v['face']:.3f}/{v['plate']:.3f}" for k, v in recall.items()))
    print(f"({counts['synthetic']} synthetic and {counts['real']} real 5760x2880 panoramas, median of "
          f"{args.repeats} repeats; pii-blur detects faces and plates, deface faces only)")
    if not args.workdir:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
