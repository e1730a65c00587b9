"""pii-blur against deface, each at its defaults: blur-recall and throughput on 360 panoramas and flat photos.

    python benchmarks/compare_deface.py DATA_DIR [--synthetic 4] [--width 5760] [--repeats 3]
        [--workdir DIR] [--blur-eval /work/shared/tools/blur_eval.py] [--pii-blur-args "..."]
        [--pii-blur-python PYTHON] [--steady]

DATA_DIR is the evaluation data folder (faces/, plates/). deface 1.5.0 is
installed into its own throwaway virtual environment (it pulls
opencv-python, which must not touch ours). pii-blur runs from a plain
install's environment too, as the README's "Try it" makes it (`pip install .`,
no test or backend extras, which make Beam's import load cloud clients: 0.6
against 1.2 s), with this checkout's code (PYTHONPATH), unless
--pii-blur-python names another interpreter. Two sets:

- panoramas: synthetic labelled 5760x2880 panoramas (benchmarks/make_panoramas.py,
  JPEG q92, faces and plates in every pitch band, poles and seam included);
- flat photos: DATA_DIR/faces as it is (crowds and groups, 54 photos).

Each tool runs at its defaults, as a user would start it on a folder: pii-blur
finds faces and plates with one worker per core (threads of one process); deface finds faces,
one process over all the files with ONNX Runtime's own threads. Every run is
judged alike by the black-box blur_eval.py on the output pixels (an object is
blurred when its fine detail is gone inside its exact outline), which also
times the command (wall seconds, start-up included). Each set is run
--repeats times, the tools interleaved; recall comes from the first run (it
does not change between runs) and throughput is the median.

Prints per set a Markdown table: recall by pitch band (|pitch| < 30, 30-55,
> 55 degrees, seam; panoramas) and by object height (< 16, 16-32, 32-64,
>= 64 px), collateral, median wall seconds, images per second and the
throughput ratio pii-blur / deface, of the medians and of each repeat's pair of runs (which ran
back to back, so the machine's other load falls on both alike).

--steady also measures throughput with start-up taken out: each tool is
timed on the set and on the set given twice (the same files under two
folders), interleaved, and (doubled - single) / images is its marginal
seconds per image, what a run of many images pays for each one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import recall_sweep  # noqa: E402
from scaling import image_files  # noqa: E402

DEFACE_VERSION = "1.5.0"
DEFACE_THRESHOLD = 0.2    # deface's default
HEIGHT_BINS = (("<16", "< 16 px"), ("16-32", "16-32 px"), ("32-64", "32-64 px"), (">=64", ">= 64 px"))


def ensure_deface(venv: str) -> str:
    deface = os.path.join(venv, "bin", "deface")
    if not os.path.exists(deface):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", f"deface=={DEFACE_VERSION}",
                        "onnxruntime", "onnx"], check=True)   # deface's onnxrt backend imports onnx
    return deface


def ensure_plain_install(venv: str) -> str:
    """The Python of a plain `pip install .` of this checkout in `venv`, installed again when setup.py changes."""
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, "pii-blur-setup.sha256")
    with open(os.path.join(ROOT, "setup.py"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if not os.path.exists(stamp) or open(stamp).read() != digest:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", ROOT], check=True)
        with open(stamp, "w") as f:
            f.write(digest)
    return python


def run_deface(argv: list[str]) -> int:
    """`compare_deface.py --run-deface DEFACE INPUT OUTPUT`: one deface process over every image under
    INPUT (deface writes NAME_anonymized.EXT beside each), each result moved to OUTPUT under its
    input's relative path."""
    deface, source, target = argv
    files = image_files(source)
    code = subprocess.run([deface, "--thresh", str(DEFACE_THRESHOLD), *files],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    for path in files:
        stem, extension = os.path.splitext(path)
        produced = f"{stem}_anonymized{extension}"
        if os.path.exists(produced):
            destination = os.path.join(target, os.path.relpath(path, source))
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            shutil.move(produced, destination)
    return code


def judged(set_dir: str, command: str, blur_eval: str, work: str, name: str) -> dict:
    """blur_eval.py's JSON for one run of `command` on `set_dir`."""
    out = os.path.join(work, f"{name}.json")
    subprocess.run([sys.executable, blur_eval, "--set", set_dir, "--cmd", command, "--json", out],
                   check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=ROOT))
    with open(out) as f:
        return json.load(f)


def recall_rows(set_dir: str, result: dict, panoramas: bool) -> dict:
    """{row title: (blurred, total)} for faces (and plates where labelled)."""
    rows = {}
    if panoramas:   # per object, its seam halves judged as one (recall_sweep.py)
        table = recall_sweep.recall_table(recall_sweep.object_verdicts(set_dir, result))
        for label in ("face", "plate"):
            for key, title in (("all", "all"), *recall_sweep.BANDS, *recall_sweep.SIZES):
                if table[(label, key)][1]:
                    rows[f"{label}, {title}"] = tuple(table[(label, key)])
        return rows
    recall = result["summary"]["recall"]
    for label in ("face", "plate"):
        for key, title in (("all", "all"), *((f"height {b}", t) for b, t in HEIGHT_BINS)):
            entry = recall.get(f"{label}/{key}")
            if entry and entry["boxes"]:
                rows[f"{label}, {title}"] = (entry["blurred"], entry["boxes"])
    return rows


def print_table(title: str, set_dir: str, runs: dict[str, list[dict]], panoramas: bool) -> None:
    tables = {name: recall_rows(set_dir, results[0], panoramas) for name, results in runs.items()}
    names = list(runs)
    keys = list(dict.fromkeys(key for table in tables.values() for key in table))
    images = runs[names[0]][0]["summary"]["images"]
    print(f"\n{title}: {images} images from {set_dir}; blur-recall on the output pixels (blur_eval.py)\n")
    print(f"| | objects | {' | '.join(names)} |")
    print("|---|---|" + "---|" * len(names))
    for key in keys:
        total = max(table.get(key, (0, 0))[1] for table in tables.values())
        cells = [f"{table[key][0] / table[key][1]:.3f}" if key in table else "–" for table in tables.values()]
        print(f"| {key} | {total} | {' | '.join(cells)} |")
    print("| collateral | | " + " | ".join(f"{100 * r[0]['summary']['collateral']:.2f} %" for r in runs.values()) + " |")
    walls = {name: statistics.median(r["summary"]["seconds"] for r in results) for name, results in runs.items()}
    spread = {name: [round(r["summary"]["seconds"], 1) for r in results] for name, results in runs.items()}
    print("| wall s, median (runs) | | " + " | ".join(f"{walls[n]:.1f} ({', '.join(map(str, spread[n]))})"
                                                   for n in names) + " |")
    print("| images / s | | " + " | ".join(f"{images / walls[n]:.2f}" for n in names) + " |")
    per_repeat = [d["summary"]["seconds"] / p["summary"]["seconds"] for p, d in zip(runs["pii-blur"], runs["deface"])]
    print(f"\nthroughput pii-blur / deface: {walls['deface'] / walls['pii-blur']:.2f}x "
          f"(each repeat's pair: {', '.join(f'{r:.2f}' for r in per_repeat)})")


def doubled(set_dir: str, work: str) -> str:
    """A folder holding each image under set_dir twice, as a/PATH and b/PATH (hard links where possible)."""
    target = os.path.join(work, "doubled-" + hashlib.sha256(set_dir.encode()).hexdigest()[:8])
    if os.path.exists(target):
        return target
    for copy in ("a", "b"):
        for source in image_files(set_dir):
            destination = os.path.join(target, copy, os.path.relpath(source, set_dir))
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            try:
                os.link(source, destination)
            except OSError:
                shutil.copyfile(source, destination)
    return target


def timed(command: str, source: str, work: str) -> float:
    """Wall seconds of one run of `command` ({input}, {output}) from `source` into a fresh folder."""
    output = tempfile.mkdtemp(prefix="out-", dir=work)
    start = time.perf_counter()
    subprocess.run(command.format(input=shlex.quote(source), output=shlex.quote(output)), shell=True, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=ROOT))
    seconds = time.perf_counter() - start
    shutil.rmtree(output, ignore_errors=True)
    return seconds


def print_steady(title: str, set_dir: str, commands: dict[str, str], repeats: int, work: str) -> None:
    """Marginal seconds per image of each tool: (doubled set - set) / images, medians of interleaved repeats."""
    twice = doubled(set_dir, work)
    once = os.path.join(twice, "a")
    images = len(image_files(once))
    marginal = {name: [] for name in commands}
    for repeat in range(repeats):
        for name, command in commands.items():
            print(f"{title}, steady run {repeat + 1}: {name}", file=sys.stderr)
            seconds_once = timed(command, once, work)
            seconds_twice = timed(command, twice, work)
            marginal[name].append((seconds_twice - seconds_once) / images)
    medians = {name: statistics.median(values) for name, values in marginal.items()}
    print(f"\n{title}, steady state: marginal seconds per image ((set twice - set once) / {images}), "
          f"medians of {repeats}\n")
    print("| | " + " | ".join(commands) + " |")
    print("|---|" + "---|" * len(commands))
    print("| s / image, median (runs) | " + " | ".join(
        f"{medians[n]:.3f} ({', '.join(f'{v:.3f}' for v in marginal[n])})" for n in commands) + " |")
    print(f"\nsteady-state throughput pii-blur / deface: {medians['deface'] / medians['pii-blur']:.2f}x")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run-deface"]:
        return run_deface(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--synthetic", type=int, default=4, help="synthetic panoramas (default 4)")
    parser.add_argument("--width", type=int, default=5760, help="their width, height is half (default 5760)")
    parser.add_argument("--plates", type=int, default=5, help="plate photos per panorama (default 5)")
    parser.add_argument("--seed", type=int, default=2, help="make_panoramas.py's seed (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per tool and set (default 3)")
    parser.add_argument("--sets", default="panoramas,flat", help="which sets (default panoramas,flat)")
    parser.add_argument("--pii-blur-args", default="", help="more pii-blur CLI options, one string (default none)")
    parser.add_argument("--workdir", default=None, help="scratch folder, kept (default: a temporary one, deleted)")
    parser.add_argument("--pii-blur-python", default=None,
                        help="the Python that runs pii-blur (default: a plain install in TMPDIR/pii-blur-plain-venv)")
    parser.add_argument("--deface-venv", default=os.path.join(tempfile.gettempdir(), "pii-blur-deface-venv"),
                        help="where deface is installed (default: TMPDIR/pii-blur-deface-venv)")
    parser.add_argument("--blur-eval", default=recall_sweep.DEFAULT_BLUR_EVAL,
                        help=f"the judge (default {recall_sweep.DEFAULT_BLUR_EVAL})")
    parser.add_argument("--steady", action="store_true",
                        help="also measure marginal seconds per image, start-up taken out (see above)")
    args = parser.parse_args(argv)
    scratch = args.workdir or tempfile.mkdtemp(prefix="pii-blur-vs-deface-")
    os.makedirs(scratch, exist_ok=True)
    deface = ensure_deface(args.deface_venv)
    python = args.pii_blur_python or ensure_plain_install(os.path.join(tempfile.gettempdir(), "pii-blur-plain-venv"))
    commands = {
        "pii-blur": f"{shlex.quote(python)} -m pii_blur.cli {{input}} {{output}} {args.pii_blur_args}",
        "deface": f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))} --run-deface "
                  f"{shlex.quote(deface)} {{input}} {{output}}",
    }
    sets = []
    if "panoramas" in args.sets:
        panoramas = os.path.join(scratch, "panoramas")
        if not os.path.exists(os.path.join(panoramas, "objects.json")):
            subprocess.run([sys.executable, os.path.join(HERE, "make_panoramas.py"), args.data_dir, panoramas,
                            "--count", str(args.synthetic), "--width", str(args.width), "--format", "jpg",
                            "--plates", str(args.plates), "--seed", str(args.seed)],
                           check=True, stderr=subprocess.DEVNULL)
        sets.append(("Panoramas", panoramas, True))
    if "flat" in args.sets:
        sets.append(("Flat photos", os.path.join(args.data_dir, "faces"), False))
    for title, set_dir, is_panorama in sets:
        runs = {name: [] for name in commands}
        for repeat in range(args.repeats):
            for name, command in commands.items():
                print(f"{title}, run {repeat + 1}: {name}", file=sys.stderr)
                runs[name].append(judged(set_dir, command, args.blur_eval, scratch, f"{title}-{name}-{repeat}"))
        print_table(title, set_dir, runs, is_panorama)
        if args.steady:
            print_steady(title, set_dir, commands, args.repeats, scratch)
    if not args.workdir:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
