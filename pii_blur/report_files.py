"""The report on disk: part files written in parallel, merged by streaming into one sorted file. No Beam.

A run writes one JSON line per input into part files beside the report
(REPORT.parts/RUN/part-UUID.jsonl, in no order; RUN is named after the
run's start) and its summary into REPORT.parts/RUN/summary.json.
`merge_parts` then sorts the lines by input path into REPORT, with the
summary as its last line, holding at most SORT_CHUNK_LINES lines in memory:
chunks are sorted into local run files, which heapq.merge streams into the
report. A bundle that a runner retried may have left a second part with the
same inputs; the merge keeps one line per input path. Runs on a cluster may
keep the parts instead (millions of lines need not pass through one
machine); `iter_report` and `read_summary` read either form.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import json
import os
import posixpath
import tempfile
import time
import uuid
from typing import Iterable, Iterator

import fsspec

from pii_blur import storage
from pii_blur.types import FileReport, Status

PARTS_SUFFIX = ".parts"
SUMMARY_NAME = "summary.json"
PART_LINES = 10_000
SORT_CHUNK_LINES = 50_000


def parts_folder(report_url: str) -> str:
    return report_url + PARTS_SUFFIX


def run_folder(report_url: str, started_at: float) -> str:
    """Where one run's parts go: a new folder per run, so a killed run's parts never mix in."""
    return storage.join_url(parts_folder(report_url), f"run-{int(started_at * 1000):015d}")


def write_part(folder_url: str, lines: list[str]) -> str:
    url = storage.join_url(folder_url, f"part-{uuid.uuid4().hex}.jsonl")
    storage.write_atomic(url, ("\n".join(lines) + "\n").encode("utf-8"))
    return url


def report_line(report: FileReport) -> str:
    return json.dumps(report.to_json(), sort_keys=True)


def empty_counts() -> dict:
    """Counts that `add_to_counts` fills: files, one per status, detections per label."""
    return {"files": 0, **{status.value: 0 for status in Status}, "detections": {}}


def add_to_counts(counts: dict, report: FileReport) -> dict:
    counts["files"] += 1
    counts[report.status.value] += 1
    if report.status == Status.BLURRED:
        labels = collections.Counter(counts["detections"])
        labels.update(d.label for d in report.detections)
        counts["detections"] = dict(labels)
    return counts


def merge_counts(many: Iterable[dict]) -> dict:
    merged = empty_counts()
    labels: collections.Counter = collections.Counter()
    for counts in many:
        for key, value in counts.items():
            if key != "detections":
                merged[key] += value
        labels.update(counts["detections"])
    merged["detections"] = dict(sorted(labels.items()))
    return merged


def summary_line(counts: dict, started_at: float, settings: dict) -> dict:
    """The report's last line. started_at: time.time() when the run began.
    settings: what the run was asked (classes, threshold, projection, mode...),
    so that a review can propose re-runs with the same settings."""
    return {"summary": True, **counts, "detections": dict(sorted(counts["detections"].items())),
            "total_seconds": round(time.time() - started_at, 3), "settings": settings}


def write_summary(counts: dict, folder_url: str, started_at: float, settings: dict) -> str:
    url = storage.join_url(folder_url, SUMMARY_NAME)
    storage.write_atomic(url, json.dumps(summary_line(counts, started_at, settings), sort_keys=True).encode())
    return url


def _latest_run(report_url: str) -> tuple[str, list[str]]:
    """(summary URL, part URLs) of the last run that finished writing its parts."""
    fs, folder = fsspec.core.url_to_fs(parts_folder(report_url))
    runs = sorted(fs.ls(folder, detail=False)) if fs.isdir(folder) else []
    for run in reversed(runs):
        names = fs.ls(run, detail=False)
        if any(os.path.basename(n) == SUMMARY_NAME for n in names):
            parts = sorted(n for n in names if os.path.basename(n).startswith("part-"))
            return (fs.unstrip_protocol(posixpath.join(run, SUMMARY_NAME)), [fs.unstrip_protocol(p) for p in parts])
    raise FileNotFoundError(f"no report at {report_url}, nor its parts")


def _sorted_runs(part_urls: list[str], folder: str) -> list[str]:
    """Local files of at most SORT_CHUNK_LINES lines each, every one sorted by input path.

    Each line is written as `json(path) TAB line`, so merging reads only the path.
    """
    runs, chunk = [], []

    def flush():
        chunk.sort()
        path = os.path.join(folder, f"run-{len(runs):06d}")
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(f"{json.dumps(key)}\t{line}\n" for key, line in chunk)
        runs.append(path)
        chunk.clear()

    for url in part_urls:
        with fsspec.open(url, "rt", encoding="utf-8") as handle:
            for line in handle:
                line = line.rstrip("\n")
                if line:
                    chunk.append((json.loads(line)["path"], line))
                    if len(chunk) >= SORT_CHUNK_LINES:
                        flush()
    if chunk:
        flush()
    return runs


def _lines_of(run: str) -> Iterator[tuple[str, str]]:
    with open(run, encoding="utf-8") as handle:
        for text in handle:
            key, line = text.rstrip("\n").split("\t", 1)
            yield json.loads(key), line


def merge_parts(summary_url: str, report_url: str, started_at: float) -> str:
    """Sort the lines of the parts beside `summary_url` by input path into `report_url`, one
    line per path, the summary (its total_seconds brought up to now) last; then remove every part.

    The parts are listed, not passed in: Beam's DaskRunner hands side inputs
    over empty. Memory: SORT_CHUNK_LINES lines.
    """
    fs, summary_path = fsspec.core.url_to_fs(summary_url)
    part_urls = [fs.unstrip_protocol(p) for p in fs.ls(posixpath.dirname(summary_path), detail=False)
                 if posixpath.basename(p).startswith("part-")]
    with fsspec.open(summary_url, "rt", encoding="utf-8") as handle:
        summary = json.load(handle)
    summary["total_seconds"] = round(time.time() - started_at, 3)
    with tempfile.TemporaryDirectory(prefix="pii-blur-report-") as folder:
        runs = _sorted_runs(sorted(part_urls), folder)
        with storage.open_atomic(report_url) as out, contextlib.ExitStack() as stack:
            streams = [stack.enter_context(contextlib.closing(_lines_of(run))) for run in runs]
            previous = None
            for path, line in heapq.merge(*streams):
                if path != previous:
                    out.write(line.encode("utf-8") + b"\n")
                previous = path
            out.write(json.dumps(summary, sort_keys=True).encode("utf-8") + b"\n")
    fs, parts = fsspec.core.url_to_fs(parts_folder(report_url))
    fs.rm(parts, recursive=True)
    return report_url


def iter_report(report_url: str) -> Iterator[dict]:
    """Each line of a report as a dict, streamed: the merged file, or else its
    parts (in no order) and then their summary."""
    if storage.exists(report_url):
        urls = [report_url]
    else:
        summary_url, part_urls = _latest_run(report_url)
        urls = part_urls + [summary_url]
    for url in urls:
        with fsspec.open(url, "rt", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


def unreported(urls: Iterable[str], report_url: str) -> list[str]:
    """The input URLs that have no line in the report at `report_url`, sorted.

    A run must end every input it was given as a report line; one missing
    means a runner lost it, after or before its output was written.
    Memory: the set of `urls`.
    """
    missing = set(urls)
    for record in iter_report(report_url):
        missing.discard(record.get("path"))
    return sorted(missing)


TAIL_BYTES = 1 << 16


def read_summary(report_url: str) -> dict:
    """The summary line of a report, merged (its last line, read from the tail) or in parts."""
    if not storage.exists(report_url):
        with fsspec.open(_latest_run(report_url)[0], "rt", encoding="utf-8") as handle:
            return json.load(handle)
    fs, path = fsspec.core.url_to_fs(report_url)
    size = fs.size(path)
    with fs.open(path, "rb") as handle:
        handle.seek(max(0, size - TAIL_BYTES))
        tail = handle.read()
    return json.loads(tail.decode("utf-8").strip().splitlines()[-1])
