"""Panorama blur-recall by pitch band and object size, collateral and seconds, for a few search settings.

    python benchmarks/recall_sweep.py SET_DIR [--setting NAME=OVERRIDES ...] [--command NAME=CMD ...]
        [--blur-eval /work/shared/tools/blur_eval.py] [--workers 1] [--json OUT]

SET_DIR is made by benchmarks/make_panoramas.py (e.g. 6 panoramas, --width
5760 --format jpg): it holds blur_eval.py's labels.json, box_tags.json and
box_footprints.json, and objects.json, which ties each object to its boxes.

Each --setting runs the real CLI (python -m pii_blur.cli) with
$PII_BLUR_PANO_SEARCH=OVERRIDES (fields of pii_blur.anonymize.PanoSearch,
e.g. "ring_resolution=0.8,polar_threshold=0.8"; empty for the defaults), and
each --command any command with {input} and {output} (e.g. an older checkout
of pii-blur, or deface), under the black-box judge blur_eval.py: an object
counts as blurred when its fine detail is gone from the output pixels inside
its exact outline on the panorama. An object across the seam has two boxes;
they are judged as one (their lost and measurable areas summed, the same
50 % rule).

Prints, per label, recall by pitch band (|pitch| < 30, 30-55, > 55 degrees,
across the seam) and by size (the object's height at the panorama's own
resolution, so its angular size: < 16, 16-32, 32-64, >= 64 px), collateral
(blur_eval's: share of the detailed area away from every object that lost its
detail) and CPU seconds per panorama of the whole command (decode, search,
blur, encode; one worker process, one model thread unless --workers says
otherwise), then one Markdown table for the README.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_BLUR_EVAL = "/work/shared/tools/blur_eval.py"
BLUR_SHARE = 0.5   # blur_eval.py's BOX_SHARE: lost cells hold this share of the measurable area
BANDS = (("pitch<30", "\\|pitch\\| < 30°"), ("pitch30-55", "30-55°"), ("pitch>55", "> 55°"), ("seam", "seam"))
SIZES = (("size<16", "< 16 px"), ("size16-32", "16-32 px"), ("size32-64", "32-64 px"), ("size64+", ">= 64 px"))


def timed(argv: list[str]) -> int:
    """`recall_sweep.py --timed FILE -- CMD...`: run CMD, write its CPU seconds (user + system, with
    every process it waited for) to FILE."""
    out, command = argv[0], argv[2:]
    code = subprocess.run(command).returncode
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        f.write(f"{usage.ru_utime + usage.ru_stime:.3f}\n")
    return code


def run_judged(set_dir: str, name: str, command: str, env: dict, blur_eval: str, work: str) -> dict:
    """Run one command under blur_eval.py; its per-box verdicts, summary and CPU seconds."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    cpu_file = os.path.join(work, f"{safe}.cpu")
    wrapped = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))} --timed {shlex.quote(cpu_file)} -- {command}"
    out = os.path.join(work, f"{safe}.json")
    subprocess.run([sys.executable, blur_eval, "--set", set_dir, "--cmd", wrapped, "--json", out],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    with open(out) as f:
        result = json.load(f)
    with open(cpu_file) as f:
        result["cpu_seconds"] = float(f.read())
    return result


def object_verdicts(set_dir: str, result: dict) -> list[dict]:
    """One row per object: label, tags, blurred (its boxes' lost and measurable areas summed)."""
    with open(os.path.join(set_dir, "objects.json")) as f:
        panoramas = json.load(f)["panoramas"]
    boxes = {(b["image"], b["index"]): b for b in result["boxes"]}
    rows = []
    for name, objects in panoramas.items():
        for obj in objects:
            parts = [boxes[(name, index)] for index in obj["eval_boxes"]]
            lost = sum(p["lost_px"] for p in parts)
            measurable = sum(p["measurable_px"] for p in parts)
            rows.append({"label": obj["label"], "tags": set(parts[0]["tags"]),
                         "blurred": measurable > 0 and lost >= BLUR_SHARE * measurable})
    return rows


def recall_table(rows: list[dict]) -> dict:
    """{(label, tag or 'all'): (blurred, total)}."""
    table = collections.defaultdict(lambda: [0, 0])
    for row in rows:
        for key in ["all", *row["tags"]]:
            table[(row["label"], key)][0] += row["blurred"]
            table[(row["label"], key)][1] += 1
    return table


def print_tables(results: dict, set_dir: str) -> None:
    """Plain and Markdown tables of every run's recall, collateral and seconds."""
    tables = {name: recall_table(object_verdicts(set_dir, result)) for name, result in results.items()}
    images = next(iter(results.values()))["summary"]["images"]
    labels = sorted({label for table in tables.values() for label, _ in table})
    names = list(results)
    lines = [f"| label | objects | {' | '.join(names)} |", "|---|---|" + "---|" * len(names)]
    for label in labels:
        for key, title in (("all", "all"), *BANDS, *SIZES):
            total = max(table[(label, key)][1] for table in tables.values())
            if not total:
                continue
            cells = [f"{table[(label, key)][0] / max(table[(label, key)][1], 1):.3f}" for table in tables.values()]
            lines.append(f"| {label} {title} | {total} | {' | '.join(cells)} |")
    runs = list(results.values())
    lines.append("| collateral | | " + " | ".join(f"{100 * r['summary']['collateral']:.2f} %" for r in runs) + " |")
    lines.append("| CPU s / panorama | | " + " | ".join(f"{r['cpu_seconds'] / images:.1f}" for r in runs) + " |")
    lines.append("| wall s / panorama | | " + " | ".join(f"{r['summary']['seconds'] / images:.1f}" for r in runs) + " |")
    print(f"\n{images} panoramas from {set_dir}; object blur-recall (blur_eval.py, exact outlines)")
    print("\n".join(lines))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--timed"]:
        return timed(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set_dir")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="a run of the CLI with $PII_BLUR_PANO_SEARCH=OVERRIDES (repeatable; "
                             "default: one run, 'default=', at the defaults)")
    parser.add_argument("--command", action="append", default=[], metavar="NAME=CMD",
                        help="a run of any command with {input} and {output} (repeatable; default: none)")
    parser.add_argument("--workers", type=int, default=1, help="pii-blur --workers (default 1)")
    parser.add_argument("--blur-eval", default=DEFAULT_BLUR_EVAL, help=f"the judge (default {DEFAULT_BLUR_EVAL})")
    parser.add_argument("--json", default=None, help="write every run's blur_eval.py output here (default: none)")
    args = parser.parse_args(argv)
    settings = args.setting or ([] if args.command else ["default="])
    runs = []
    cli = f"{shlex.quote(sys.executable)} -m pii_blur.cli {{input}} {{output}} --workers {args.workers} --threads 1"
    for item in settings:
        name, _, overrides = item.partition("=")
        env = dict(os.environ, PII_BLUR_PANO_SEARCH=overrides, PYTHONPATH=ROOT)
        runs.append((name, cli, env))
    for item in args.command:
        name, _, command = item.partition("=")
        runs.append((name, command, dict(os.environ)))
    results = {}
    with tempfile.TemporaryDirectory(prefix="recall-sweep-") as work:
        for name, command, env in runs:
            print(f"running {name}: {command}", file=sys.stderr)
            results[name] = run_judged(args.set_dir, name, command, env, args.blur_eval, work)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)
    print_tables(results, args.set_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
