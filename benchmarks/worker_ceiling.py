"""How well the per-file work itself scales over worker processes, with Beam left out.

    python benchmarks/worker_ceiling.py PANO_DIR [--count 20] [--workers 2] [--repeats 3]

Fills a folder as benchmarks/scaling.py does, then, per repeat, runs the
per-file work of the graph's steps directly (read and decode, project,
detect with every model, merge, then copy, or blur, encode and write):
once in one process over every file, and once in --workers processes started
together, each over one of the groups that the launcher would give a local
worker (MatchImages' balanced_groups). Only the per-file loop is timed,
after the models are loaded, so Beam's start-up, shuffles and report do not
count. The ratio is therefore the most that `--workers N` can reach against
one worker on this machine, and what it falls short of N is what the
processes cost each other: memory bandwidth, shared caches, and the host's
other tenants on a virtual machine. Prints each repeat and the medians.
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

from scaling import fill


def work(folder: str, output: str, index: int, groups: int) -> dict:
    """Process group `index` of `groups` of the files in `folder` into `output`; seconds of the loop."""
    from pii_blur import anonymize, storage
    from pii_blur.config import BlurConfig
    from pii_blur.metadata import MetadataWriter
    from pii_blur.models import create_detector
    from pii_blur.storage import list_inputs
    from pii_blur.transforms.elements import DecodedInput
    from pii_blur.transforms.match import balanced_groups
    from pii_blur.transforms.read import ReadFn

    config = BlurConfig(threads=1, force=True)
    files = list_inputs(folder, output)
    mine = balanced_groups(files, groups)[index] if groups > 1 else files
    detectors = [create_detector(name, config.detector_config()) for name in config.backends()]
    reader = ReadFn(config)
    failed = 0
    with MetadataWriter() as metadata:
        started = time.perf_counter()
        for file in mine:
            decoded = next(reader.process(file))
            if not isinstance(decoded, DecodedInput):
                failed += 1
                continue
            views = anonymize.project(decoded.image, decoded.projection)
            found = anonymize.merge(decoded.image, views, [(d.threshold, anonymize.detect_views(d, views))
                                                           for d in detectors], set(config.classes))
            data = decoded.data
            if found.to_blur:
                data = anonymize.render_blurred(decoded.image, found, decoded.data, metadata, config.mode).data
            storage.write_atomic(file.output_url, data, root=output)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "files": len(mine), "failed": failed}


def run(folder: str, scratch: str, processes: int) -> list[dict]:
    output = os.path.join(scratch, f"out-{processes}")
    shutil.rmtree(output, ignore_errors=True)
    os.makedirs(output)
    children = [subprocess.Popen([sys.executable, __file__, "--child", str(index), str(processes), folder, output],
                                 stdout=subprocess.PIPE) for index in range(processes)]
    return [json.loads(child.communicate()[0]) for child in children]


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        index, groups, folder, output = sys.argv[2:6]
        print(json.dumps(work(folder, output, int(index), int(groups))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pano_dir")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="pii-blur-ceiling-")
    folder = os.path.join(scratch, "in")
    os.makedirs(folder)
    fill(args.pano_dir, folder, args.count)
    ratios, singles, slowest = [], [], []
    for repeat in range(args.repeats):
        single = run(folder, scratch, 1)[0]
        parallel = run(folder, scratch, args.workers)
        worst = max(p["seconds"] for p in parallel)
        ratios.append(single["seconds"] / worst)
        singles.append(single["seconds"])
        slowest.append(worst)
        print(f"repeat {repeat}: 1 process {single['seconds']:.1f} s; {args.workers} processes "
              f"{[round(p['seconds'], 1) for p in parallel]} s ({[p['files'] for p in parallel]} files); "
              f"x{ratios[-1]:.2f}; failed {single['failed'] + sum(p['failed'] for p in parallel)}", flush=True)
    per_file = statistics.median(singles) / args.count
    stretch = statistics.median(worst * args.workers / one for worst, one in zip(slowest, singles))
    print(f"\nmedian: 1 process {statistics.median(singles):.1f} s ({per_file:.2f} s per file), "
          f"{args.workers} processes {statistics.median(slowest):.1f} s (slowest), x{statistics.median(ratios):.2f} "
          f"(ceiling {args.workers}); the slowest process took x{stretch:.2f} the time of 1/{args.workers} of "
          f"the single run: contention and imbalance ({args.count} files, {args.repeats} repeats)")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
