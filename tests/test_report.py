"""The report: part files through Beam's sink, a combined summary, and a streaming merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from pii_blur import report_files, review
from pii_blur.transforms.report import WriteReport
from pii_blur.types import Detection, FileReport, Status

LOCAL = ["--runner=FnApiRunner", "--direct_running_mode=in_memory"]
SETTINGS = {"min_probability": 30, "classes": "face", "projection": "auto", "models": "models.yaml"}


def synthetic_reports(first: int, count: int) -> list[FileReport]:
    statuses = list(Status)
    return [FileReport(path=f"file:///archive/{i % 97:02d}/photo-{i:07d}.jpg", status=statuses[i % len(statuses)],
                       output=f"/out/{i:07d}.jpg", detections=[Detection("plate", 0.8, (1, 2, 30, 40))] * (i % 3),
                       timings={"detect": 0.5})
            for i in range(first, first + count)]


def write(tmp_path, reports: list[FileReport], merge: bool) -> str:
    report = str(tmp_path / "report.jsonl")
    with TestPipeline(options=PipelineOptions(LOCAL), blocking=True) as p:
        _ = (p | beam.Create(reports) | WriteReport(report, time.time() - 5, settings=SETTINGS, merge=merge))
    return report


def test_the_merged_report_is_sorted_with_the_summary_last(tmp_path, monkeypatch):
    monkeypatch.setattr(report_files, "SORT_CHUNK_LINES", 7)   # many sorted runs to merge
    reports = synthetic_reports(0, 60)
    report = write(tmp_path, reports, merge=True)
    lines = [json.loads(line) for line in open(report, encoding="utf-8")]
    assert [line["path"] for line in lines[:-1]] == sorted(r.path for r in reports)
    assert lines[:-1] == [r.to_json() for r in sorted(reports, key=lambda r: r.path)]
    summary = lines[-1]
    assert summary["summary"] and summary["files"] == 60 and summary["blurred"] == 12
    assert summary["detections"] == {"plate": sum(len(r.detections) for r in reports if r.status == Status.BLURRED)}
    assert summary["settings"] == SETTINGS and summary["total_seconds"] >= 5
    assert report_files.read_summary(report) == summary
    assert not os.path.exists(report_files.parts_folder(report))


@pytest.mark.parametrize("merge", [True, False])
def test_inputs_without_a_report_line_are_named(tmp_path, merge):
    reports = synthetic_reports(0, 12)
    report = write(tmp_path, reports[2:], merge=merge)
    assert report_files.unreported((r.path for r in reports), report) == sorted(r.path for r in reports[:2])
    assert report_files.unreported((r.path for r in reports[2:]), report) == []


def test_unmerged_parts_are_read_as_a_report(tmp_path):
    """A cluster run keeps its parts; the summary, the lines and the review page read them."""
    reports = synthetic_reports(0, 30)
    report = write(tmp_path, reports, merge=False)
    assert not os.path.exists(report)
    [run] = os.listdir(report_files.parts_folder(report))
    assert len(os.listdir(os.path.join(report_files.parts_folder(report), run))) >= 2     # parts and summary.json
    assert report_files.read_summary(report)["files"] == 30
    lines = list(report_files.iter_report(report))
    assert sorted(line["path"] for line in lines[:-1]) == sorted(r.path for r in reports)
    parsed = review.load_report(report)
    assert len(parsed.entries) == 30 and parsed.counts()["failed"] == 6


GENERATOR = """
import resource, sys, time
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
sys.path.insert(0, sys.argv[3])
from test_report import synthetic_reports
from pii_blur.transforms.report import WriteReport

total, report = int(sys.argv[1]), sys.argv[2]
groups = 100
with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"])) as p:
    (p | beam.Create([g * (total // groups) for g in range(groups)])
       | beam.FlatMap(synthetic_reports, count=total // groups)
       | WriteReport(report, time.time()))
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_kb(lines: int, report: str) -> int:
    result = subprocess.run([sys.executable, "-c", GENERATOR, str(lines), report, os.path.dirname(__file__)],
                            capture_output=True, text=True, timeout=600, check=True)
    return int(result.stdout.split("PEAK_KB")[-1].split()[0])


@pytest.mark.slow
def test_300000_lines_go_through_in_bounded_memory(tmp_path):
    """Measured: 3,000 lines peak at about 255 MB (Beam and the interpreter)
    and 300,000 at about 285 MB; gathering them in a list (the report before
    parts) peaked at 1.5 GB."""
    small = _peak_kb(3_000, str(tmp_path / "small.jsonl"))
    big = _peak_kb(300_000, str(tmp_path / "big.jsonl"))
    print(f"\nreport peak memory: 3,000 lines {small >> 10} MiB, 300,000 lines {big >> 10} MiB")
    assert big - small < 120 * 1024
    with open(tmp_path / "big.jsonl", encoding="utf-8") as handle:
        count = sum(1 for _ in handle)
    assert count == 300_001
    assert report_files.read_summary(str(tmp_path / "big.jsonl"))["files"] == 300_000
