"""Throughput with 1 and 2 local workers, and on Dask, on the same real panoramas or flat photos.

    python benchmarks/scaling.py PANO_DIR [--count 20] [--runs local1,local2,processes2,local1x2,dask2] [--repeats 3]

Fills a folder with --count images (the JPEGs and PNGs under PANO_DIR, cycled under
new names), then runs the CLI on it once per configuration and repeat, the
configurations interleaved so that a slow spell of this noisy machine hits
them alike. Prints, per configuration, the median wall time, files per
minute, the median of the per-repeat speed-ups against one worker, the peak
RSS of the largest process (for --workers 1 that is the worker itself), how
many files each worker process handled (the report's worker field), and each
worker's busy seconds, so that the fixed start-up cost shows apart from the
per-file work.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
RUNS = {
    "local1": ["--workers", "1"],
    "local2": ["--workers", "2"],   # the default for two workers: threads of one process
    "processes2": ["--workers", "2", "--direct_running_mode=multi_processing"],
    "local1x2": ["--workers", "1", "--threads", "2"],   # one worker, two model threads
    "dask2": ["--workers", "2", "--runner", "dask"],
}


def image_files(folder: str) -> list[str]:
    """The JPEG and PNG files under `folder`, at any depth, sorted."""
    return sorted(os.path.join(root, name) for root, _, names in os.walk(folder)
                  for name in names if name.lower().endswith(IMAGE_EXTENSIONS))


def fill(pano_dir: str, folder: str, count: int) -> None:
    """Copy `count` images into `folder`: the JPEGs and PNGs under pano_dir (panoramas, or flat photos), cycled
    under new names."""
    sources = image_files(pano_dir)
    if not sources:
        raise SystemExit(f"no JPEG or PNG images under {pano_dir}")
    for index in range(count):
        source = sources[index % len(sources)]
        shutil.copy(source, os.path.join(folder, f"{index:03d}-{os.path.basename(source)}"))


def run(source: str, output: str, extra: list[str]) -> dict:
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "pii_blur.cli", source, output, *extra],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # wait4's maxrss: the largest of this run's processes (its reaped workers included).
    _, _, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    peak_mib = usage.ru_maxrss / 1024
    lines = [json.loads(line) for line in open(os.path.join(output, "pii-blur-report.jsonl"))]
    workers = collections.Counter(line["worker"] for line in lines[:-1])
    busy = collections.Counter()
    for line in lines[:-1]:
        busy[line["worker"]] += sum(line.get("timings", {}).values())
    return {"seconds": seconds, "peak_mib": peak_mib, "workers": dict(workers), "busy": dict(busy),
            "summary": lines[-1]}


def _slowest_busy(result: dict, workers: int) -> float:
    """Busy seconds of the busiest worker; a threads run reports one process, whose seconds its workers share."""
    busy = result["busy"].values()
    return max(busy) if len(busy) >= workers else sum(busy) / workers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pano_dir")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--runs", default="local1,local2,processes2,dask2")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    names = args.runs.split(",")
    if "local1" not in names:
        names.insert(0, "local1")   # the base of every speed-up
    scratch = tempfile.mkdtemp(prefix="pii-blur-scaling-")
    source = os.path.join(scratch, "in")
    os.makedirs(source)
    fill(args.pano_dir, source, args.count)
    results = collections.defaultdict(list)
    for repeat in range(args.repeats):
        for name in names:
            output = os.path.join(scratch, f"{name}-{repeat}")
            results[name].append(run(source, output, RUNS[name]))
            shutil.rmtree(output)
            r = results[name][-1]
            print(f"repeat {repeat} {name:8} {r['seconds']:6.1f} s  busy s per worker "
                  f"{sorted(round(b, 1) for b in r['busy'].values())}  peak RSS {r['peak_mib']:.0f} MiB", flush=True)
    print()
    for name in names:
        runs = results[name]
        seconds = statistics.median(r["seconds"] for r in runs)
        speedup = statistics.median(base["seconds"] / r["seconds"] for base, r in zip(results["local1"], runs))
        workers = int(RUNS[name][RUNS[name].index("--workers") + 1])
        # a threads run reports one process: its busy seconds are shared by its workers
        fixed = statistics.median(r["seconds"] - _slowest_busy(r, workers) for r in runs)
        # the per-file work alone: one worker's busy seconds against the busiest worker's (threads: their share)
        work_speedup = statistics.median(sum(base["busy"].values()) / _slowest_busy(r, workers)
                                         for base, r in zip(results["local1"], runs))
        print(f"{name:8} {seconds:6.1f} s  {60 * args.count / seconds:6.2f} files/min  x{speedup:.2f} vs 1 worker  "
              f"(work alone x{work_speedup:.2f})  "
              f"peak RSS {max(r['peak_mib'] for r in runs):.0f} MiB  "
              f"files per worker {sorted(runs[-1]['workers'].values())}  "
              f"failed {sum(r['summary']['failed'] for r in runs)}  start-up, shuffle and tail {fixed:.1f} s")
    print(f"({args.count} files, {args.repeats} interleaved repeats, medians; 'x' is the median of each "
          f"repeat's throughput against local1; --threads defaults to 1; busy: the seconds of the report's "
          f"per-file timings, summed per worker process; a threads run reports one process, whose "
          f"busy seconds count as shared equally by its workers; 'work alone': local1's busy seconds "
          f"against the busiest worker's, start-up and tail left out)")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
