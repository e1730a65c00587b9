"""Throughput with 1 and 2 local workers, and on Dask, on the same real panoramas.

    python benchmarks/scaling.py PANO_DIR [--count 20] [--runs local1,local2,local1x2,dask2]

Fills a folder with --count panoramas (the JPEGs under PANO_DIR, cycled under
new names), then runs the CLI once per configuration on it and prints wall
time, panoramas per minute, the speed-up against one worker, the peak RSS of
the largest process (for --workers 1 that is the worker itself), how many
files each worker process handled (the report's worker field), and each
worker's busy seconds, so that the fixed start-up cost shows apart from the
per-file work.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

RUNS = {
    "local1": ["--workers", "1"],
    "local2": ["--workers", "2"],
    "local1x2": ["--workers", "1", "--threads", "2"],   # one worker, two model threads
    "dask2": ["--workers", "2", "--runner", "dask"],
}


def fill(pano_dir: str, folder: str, count: int) -> None:
    """Copy `count` panoramas into `folder`: the JPEGs under pano_dir, cycled under new names."""
    sources = sorted(os.path.join(root, name) for root, _, names in os.walk(pano_dir)
                     for name in names if name.lower().endswith((".jpg", ".jpeg")))
    if not sources:
        raise SystemExit(f"no JPEG panoramas under {pano_dir}")
    for index in range(count):
        source = sources[index % len(sources)]
        shutil.copy(source, os.path.join(folder, f"{index:03d}-{os.path.basename(source)}"))


def run(source: str, output: str, extra: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pii_blur.cli", source, output, *extra],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    seconds = time.perf_counter() - started
    peak_mib = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    lines = [json.loads(line) for line in open(os.path.join(output, "pii-blur-report.jsonl"))]
    workers = collections.Counter(line["worker"] for line in lines[:-1])
    busy = collections.Counter()
    for line in lines[:-1]:
        busy[line["worker"]] += sum(line.get("timings", {}).values())
    return {"seconds": seconds, "peak_mib": peak_mib, "workers": dict(workers), "busy": dict(busy),
            "summary": lines[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pano_dir")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--runs", default="local1,local2,dask2")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="pii-blur-scaling-")
    source = os.path.join(scratch, "in")
    os.makedirs(source)
    fill(args.pano_dir, source, args.count)
    results = {}
    for name in args.runs.split(","):
        results[name] = run(source, os.path.join(scratch, name), RUNS[name])
        r = results[name]
        base = results.get("local1", r)["seconds"]
        print(f"{name:7} {r['seconds']:7.1f} s  {60 * args.count / r['seconds']:6.2f} panos/min  "
              f"x{base / r['seconds']:.2f} vs 1 worker  peak RSS {r['peak_mib']:.0f} MiB  "
              f"files per worker {sorted(r['workers'].values())}  failed {r['summary']['failed']}", flush=True)
        busiest = max(r["busy"].values())
        print(f"{'':7} busy s per worker {sorted(round(b, 1) for b in r['busy'].values())}  "
              f"start-up, shuffle and tail {r['seconds'] - busiest:.1f} s", flush=True)
    print(f"({args.count} panoramas; 'x' is throughput against local1 in this run; --threads defaults to 1; "
          f"busy: the seconds of the report's per-file timings, summed per worker process)")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
