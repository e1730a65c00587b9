"""Planning time of a rerun: list INPUT and OUTPUT, compare KEYs, read the index (pii_blur/plan.py).

    python benchmarks/plan_listing.py [--inputs 10000] [--new 100] [--store local|memory]

Makes an archive of --inputs tiny files, all but --new of them finished as a
completed run leaves them (output, record and index line), then times
plan.list_planned over it: listing INPUT, listing OUTPUT, reading the index
and building the plan. Prints the median of --repeat runs. local: a
temporary folder (real file-system listings); memory: fsspec's in-memory
store (the planner's own cost, without I/O).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid

from pii_blur import manifest, plan, storage
from pii_blur.types import FileReport, Status

FINGERPRINT = "0123456789abcdef"


def make_archive(root: str, count: int, new: int) -> tuple[str, str]:
    """INPUT and OUTPUT under `root`, with all but `new` inputs finished."""
    source, output = storage.join_url(root, "photos"), storage.join_url(root, "blurred")
    for index in range(count):
        storage.write_atomic(storage.join_url(source, f"{index // 1000:02d}/photo-{index:05d}.jpg"),
                             b"stands for a photo %d" % index, root=root)
    inputs = storage.list_inputs(source, output)
    finished = inputs[:count - new]
    reports = [FileReport(path=f.url, status=Status.COPIED, output=f.output_url, size_bytes=f.size) for f in finished]
    for item, report in zip(finished, reports):
        storage.write_atomic(item.output_url, b"copy", root=output)
        manifest.record_finished(item, report, FINGERPRINT)
    plan.plan_inputs(finished, output, plan.Planning(FINGERPRINT, run_id="first"))
    plan.write_index(output, (r.to_json() for r in reports), "first")
    return source, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=10_000, help="archive size (default: 10000)")
    parser.add_argument("--new", type=int, default=100, help="inputs not yet finished (default: 100)")
    parser.add_argument("--store", choices=("local", "memory"), default="local", help="(default: local)")
    parser.add_argument("--repeat", type=int, default=5, help="timed plans (default: 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = folder if args.store == "local" else f"memory://plan-{uuid.uuid4().hex}"
        started = time.perf_counter()
        source, output = make_archive(root, args.inputs, args.new)
        print(f"archive of {args.inputs} inputs ({args.new} new) made in {time.perf_counter() - started:.1f} s")
        seconds, listing = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            planned = plan.list_planned(source, output, "", plan.Planning(FINGERPRINT))
            seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            storage.list_inputs(source, output)
            storage.list_files(output)
            listing.append(time.perf_counter() - started)
        todo = sum(isinstance(item, plan.TodoInput) for item in planned)
        with_line = sum(bool(getattr(item, "report_line", "")) for item in planned)
        print(f"{args.store}: planned {len(planned)} inputs in {statistics.median(seconds):.3f} s median of "
              f"{args.repeat} (listing INPUT and OUTPUT alone: {statistics.median(listing):.3f} s); "
              f"{todo} to do, {with_line} finished with their report line from the index")


if __name__ == "__main__":
    main()
