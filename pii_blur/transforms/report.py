"""Writing the JSON-lines report: one line per input, then a summary line."""

from __future__ import annotations

import collections
import json
import time

import apache_beam as beam
import fsspec

from pii_blur import storage
from pii_blur.types import FileReport, Status


def report_lines(reports: list[FileReport], started_at: float) -> str:
    """The report's text: lines sorted by input path, then the summary.

    started_at: time.time() when the run began, for the total seconds.
    """
    ordered = sorted(reports, key=lambda r: r.path)
    counts = collections.Counter(r.status.value for r in ordered)
    detections = collections.Counter(d.label for r in ordered for d in r.detections
                                     if r.status == Status.BLURRED)
    summary = {
        "summary": True,
        "files": len(ordered),
        **{status.value: counts.get(status.value, 0) for status in Status},
        "detections": dict(sorted(detections.items())),
        "total_seconds": round(time.time() - started_at, 3),
    }
    lines = [json.dumps(r.to_json(), sort_keys=True) for r in ordered]
    lines.append(json.dumps(summary, sort_keys=True))
    return "\n".join(lines) + "\n"


def _write(reports: list[FileReport], report_url: str, started_at: float) -> str:
    storage.write_atomic(report_url, report_lines(reports, started_at).encode())
    return report_url


class WriteReport(beam.PTransform):
    """PCollection[FileReport] -> the report file at `report_url`, written once, atomically."""

    def __init__(self, report_url: str, started_at: float):
        super().__init__()
        self.report_url = report_url
        self.started_at = started_at

    def expand(self, reports):
        return (
            reports
            | "Gather" >> beam.combiners.ToList()
            | "Write" >> beam.Map(_write, report_url=self.report_url, started_at=self.started_at)
        )


def iter_report(report_url: str):
    """Each line of a written report as a dict, read as a stream (summary included)."""
    fs, path = fsspec.core.url_to_fs(report_url)
    with fs.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def read_summary(report_url: str) -> dict:
    """The summary (last) line of a written report."""
    text = storage.read_bytes(report_url).decode()
    return json.loads(text.strip().splitlines()[-1])
