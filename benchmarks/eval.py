"""Blur-recall and collateral of the pii-blur CLI on a labelled data folder, judged on the output pixels.

    python benchmarks/eval.py DATA_DIR --tool PATH/blur_eval.py [--min-probability 40] [--workers 2]
        [--json OUT] [--work DIR] [-- more CLI arguments, e.g. --mode pixelate]

DATA_DIR holds images and a labels.json mapping each image path (relative to
DATA_DIR) to boxes [x1, y1, x2, y2, "face" | "plate"] in stored pixels.

The judging is the black-box tool's (--tool, the shared blur_eval.py; its
docstring defines the metric): it copies the labelled images to a fresh
folder, runs this checkout's CLI on them once, and counts a labelled box as
blurred only when its fine detail is gone from the output pixels, whatever
the report or the blur mask say. It prints recall by class, box-height bin
and subfolder, collateral (the share of the detailed area outside the boxes
that lost its detail) and seconds.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def cli_command(min_probability: int, workers: int, extra: list[str]) -> str:
    """The tool's --cmd: this checkout's CLI, with {input} and {output} for the tool to fill in."""
    words = [sys.executable, "-m", "pii_blur.cli"]
    options = [str(min_probability), "--workers", str(workers), *extra]
    return (f"cd {shlex.quote(os.path.abspath(REPO))} && {shlex.join(words)} {{input}} {{output}} "
            f"{shlex.join(options)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", help="labelled folder (labels.json)")
    parser.add_argument("--tool", required=True, help="path of the black-box judge, blur_eval.py")
    parser.add_argument("--min-probability", type=int, default=40,
                        help="MIN_PERCENTAGE_PROBABILITY for the CLI (default: 40)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="CLI worker processes (default: number of cores)")
    parser.add_argument("--json", help="the tool writes every number, per image and per box, here (default: none)")
    parser.add_argument("--work", help="keep the run's input, output and report under this folder "
                                       "(default: a temporary folder, deleted)")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])   # after --: more CLI arguments
    command = [sys.executable, args.tool, "--set", args.data_dir,
               "--cmd", cli_command(args.min_probability, args.workers, argv[split + 1:])]
    if args.json:
        command += ["--json", args.json]
    if args.work:
        command += ["--work", args.work]
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
