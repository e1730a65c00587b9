"""End-to-end panoramas per second on one device, and where the time goes.

    python benchmarks/device_throughput.py PANO_DIR [--count 40] [--device cuda] [--workers 4] [--threads 1]

Fills a folder with --count panoramas (the JPEGs under PANO_DIR, cycled
under new names), runs the CLI once on it with the given device, workers and
threads, and prints panoramas per second (wall time of the whole command,
start-up included, and of the pipeline alone from the report's summary) and
the share of worker time per stage (read, decode, detect, blur_encode,
write) summed over the report's per-file timings.

For a lent GPU (the device tool), install onnxruntime-gpu in place of
onnxruntime first; with --device cuda the CLI stops at start-up when CUDA is
not usable, so a run on the CPU is never reported as a GPU figure.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from scaling import fill  # this folder is on sys.path when the script runs

STAGES = ("read", "decode", "detect", "blur_encode", "write")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pano_dir")
    parser.add_argument("--count", type=int, default=40, help="panoramas to process (default 40)")
    parser.add_argument("--device", default="cuda", help="cpu or cuda (default cuda)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: number of cores)")
    parser.add_argument("--threads", type=int, default=1, help="model threads per worker (default 1)")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="pii-blur-device-")
    source, output = os.path.join(scratch, "in"), os.path.join(scratch, "out")
    os.makedirs(source)
    fill(args.pano_dir, source, args.count)
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "pii_blur.cli", source, output, "--device", args.device,
                                "--workers", str(args.workers), "--threads", str(args.threads)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    wall = time.perf_counter() - started
    report = os.path.join(output, "pii-blur-report.jsonl")
    if not os.path.exists(report):
        print(completed.stdout[-4000:])
        return completed.returncode or 1
    lines = [json.loads(line) for line in open(report)]
    summary, files = lines[-1], lines[:-1]
    stage_seconds = collections.Counter()
    for line in files:
        stage_seconds.update({stage: line.get("timings", {}).get(stage, 0.0) for stage in STAGES})
    busy = sum(stage_seconds.values()) or 1.0
    print(f"{args.count} panoramas, --device {args.device} --workers {args.workers} --threads {args.threads}: "
          f"{args.count / wall:.2f} panoramas/s with start-up ({wall:.1f} s), "
          f"{args.count / summary['total_seconds']:.2f} in the pipeline ({summary['total_seconds']:.1f} s); "
          f"{summary['blurred']} blurred, {summary['copied']} copied, {summary['failed']} failed")
    print("share of worker time: " + ", ".join(f"{stage} {100 * stage_seconds[stage] / busy:.1f}%"
                                               for stage in STAGES))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
