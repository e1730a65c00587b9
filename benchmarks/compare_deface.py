"""pii-blur against deface on 360 panoramas: blur-recall by pitch band and object size, and seconds.

    python benchmarks/compare_deface.py DATA_DIR [--synthetic 4] [--width 5760] [--workdir DIR]
        [--blur-eval /work/shared/tools/blur_eval.py]

DATA_DIR is the evaluation data folder (faces/, plates/). deface 1.5.0 is
installed into its own throwaway virtual environment (it pulls
opencv-python, which must not touch ours). Synthetic labelled panoramas
(benchmarks/make_panoramas.py, JPEG q92, plates in every band, poles
included) are blurred by deface at its default threshold and at the lower
ones of DEFACE_THRESHOLDS, and by pii-blur at its defaults (faces and plates;
deface finds faces only), one worker process and one model thread each.

Every tool is judged alike, by destroyed detail (blur_eval.py, via
benchmarks/recall_sweep.py): an object counts as blurred when its fine detail
is gone from the output pixels inside its exact outline on the panorama.
Prints recall per label by pitch band (|pitch| < 30, 30-55, > 55 degrees,
seam) and size (height at the panorama's own resolution), collateral and CPU
seconds per panorama, pii-blur beside deface, as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import recall_sweep  # noqa: E402

DEFACE_VERSION = "1.5.0"
DEFACE_THRESHOLDS = (0.2, 0.1, 0.05)   # 0.2 is deface's default


def ensure_deface(venv: str) -> str:
    deface = os.path.join(venv, "bin", "deface")
    if not os.path.exists(deface):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", f"deface=={DEFACE_VERSION}",
                        "onnxruntime", "onnx"], check=True)   # deface's onnxrt backend imports onnx
    return deface


def deface_command(deface: str, threshold: float) -> str:
    """A shell command for blur_eval.py: deface writes NAME_anonymized.EXT beside each input, so run
    it on the input folder's files and move each result to the output folder under its input's name."""
    script = (f'for f in "$1"/*.jpg; do OMP_NUM_THREADS=1 {shlex.quote(deface)} --thresh {threshold} '
              f'--backend onnxrt "$f" -o "$2/$(basename "$f")" >/dev/null 2>&1 || exit 1; done')
    return f"sh -c {shlex.quote(script)} deface {{input}} {{output}}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--synthetic", type=int, default=4, help="synthetic panoramas (default 4)")
    parser.add_argument("--width", type=int, default=5760, help="their width, height is half (default 5760)")
    parser.add_argument("--plates", type=int, default=5, help="plate photos per panorama (default 5)")
    parser.add_argument("--seed", type=int, default=2, help="make_panoramas.py's seed (default 2)")
    parser.add_argument("--thresholds", default=",".join(map(str, DEFACE_THRESHOLDS)),
                        help=f"deface thresholds to run (default {','.join(map(str, DEFACE_THRESHOLDS))})")
    parser.add_argument("--workdir", default=None, help="scratch folder, kept (default: a temporary one, deleted)")
    parser.add_argument("--deface-venv", default=os.path.join(tempfile.gettempdir(), "pii-blur-deface-venv"),
                        help="where deface is installed (default: TMPDIR/pii-blur-deface-venv)")
    parser.add_argument("--blur-eval", default=recall_sweep.DEFAULT_BLUR_EVAL,
                        help=f"the judge (default {recall_sweep.DEFAULT_BLUR_EVAL})")
    args = parser.parse_args()
    scratch = args.workdir or tempfile.mkdtemp(prefix="pii-blur-vs-deface-")
    deface = ensure_deface(args.deface_venv)
    panoramas = os.path.join(scratch, "panoramas")
    subprocess.run([sys.executable, os.path.join(HERE, "make_panoramas.py"), args.data_dir, panoramas,
                    "--count", str(args.synthetic), "--width", str(args.width), "--format", "jpg",
                    "--plates", str(args.plates), "--seed", str(args.seed)], check=True, stderr=subprocess.DEVNULL)
    argv = [panoramas, "--blur-eval", args.blur_eval, "--setting", "pii-blur="]
    for threshold in args.thresholds.split(","):
        argv += ["--command", f"deface-{threshold}={deface_command(deface, float(threshold))}"]
    code = recall_sweep.main(argv)
    if not args.workdir:
        shutil.rmtree(scratch, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
