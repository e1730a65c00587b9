"""What the card-shaped graph costs against another checkout, on the same files, in one run.

    python benchmarks/graph_cost.py OTHER_CHECKOUT FOLDER [FOLDER ...] [--repeats 3] [--workers 1] [--cli=ARGS]

Runs this checkout's CLI and OTHER_CHECKOUT's (e.g. a `git worktree` of
the commit before the graph) on each FOLDER, interleaved, --force, and
prints per folder the median wall seconds and the median of the reports'
summed per-file seconds (read, decode, detect, blur and encode, write), and
their ratios. The same interpreter and packages run both, so only the code
differs. --cli passes more options to both (e.g. --cli="--precision fp32"
where the two checkouts' defaults differ).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(checkout: str, folder: str, workers: int, extra: list[str]) -> tuple[float, float]:
    """(wall seconds, summed per-file seconds) of one run of `checkout`'s CLI on `folder`."""
    with tempfile.TemporaryDirectory(prefix="graph-cost-") as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pii_blur.cli", folder, out, "--workers", str(workers), "--force", *extra],
                       env={**os.environ, "PYTHONPATH": checkout}, cwd=checkout, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        with open(os.path.join(out, "pii-blur-report.jsonl"), encoding="utf-8") as handle:
            lines = [json.loads(line) for line in handle][:-1]
    return wall, sum(sum(line.get("timings", {}).values()) for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("other")
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cli", default="", help="more CLI options for both runs, one string")
    args = parser.parse_args()
    for folder in args.folders:
        results = {"this": [], "other": []}
        for _ in range(args.repeats):
            for name, checkout in (("this", HERE), ("other", os.path.abspath(args.other))):
                results[name].append(run_once(checkout, os.path.abspath(folder), args.workers, args.cli.split()))
        medians = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
                   for name, runs in results.items()}
        (this_wall, this_files), (other_wall, other_files) = medians["this"], medians["other"]
        print(f"{folder}: wall {this_wall:.1f} s vs {other_wall:.1f} s ({this_wall / other_wall:.3f}x); "
              f"per-file sum {this_files:.1f} s vs {other_files:.1f} s ({this_files / other_files:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
