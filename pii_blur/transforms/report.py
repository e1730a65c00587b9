"""Writing the JSON-lines report: part files in parallel, a combined summary, then one sorted file."""

from __future__ import annotations

from typing import Optional

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from pii_blur import report_files
from pii_blur.transforms.anonymize import on_dask
from pii_blur.types import FileReport


class _CountReports(beam.CombineFn):
    """FileReports -> counts per status and detections per label (report_files.empty_counts)."""

    def create_accumulator(self) -> dict:
        return report_files.empty_counts()

    def add_input(self, counts: dict, report: FileReport) -> dict:
        return report_files.add_to_counts(counts, report)

    def merge_accumulators(self, accumulators) -> dict:
        return report_files.merge_counts(accumulators)

    def extract_output(self, counts: dict) -> dict:
        return counts


class _WriteParts(beam.DoFn):
    """Report lines -> part files of at most PART_LINES lines; yields each part's URL.

    Written through fsspec (any store the run reads and writes), each part
    under a new name: a retried bundle leaves a duplicate part, whose lines
    the merge drops (one line per input path).
    """

    def __init__(self, folder_url: str):
        self.folder_url = folder_url
        self.lines: list[str] = []

    def start_bundle(self):
        self.lines = []

    def process(self, line: str):
        self.lines.append(line)
        if len(self.lines) >= report_files.PART_LINES:
            yield self._flush()

    def finish_bundle(self):
        if self.lines:
            yield WindowedValue(self._flush(), MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self) -> str:
        url = report_files.write_part(self.folder_url, self.lines)
        self.lines = []
        return url


def _write_all(reports: list[FileReport], folder_url: str, report_url: str, started_at: float,
               settings: dict) -> str:
    """The whole report from one list (Dask runs, which are a cluster's size, not an archive's)."""
    counts = report_files.empty_counts()
    for report in reports:
        report_files.add_to_counts(counts, report)
    if reports:
        report_files.write_part(folder_url, [report_files.report_line(r) for r in reports])
    summary = report_files.write_summary(counts, folder_url, started_at, settings)
    return report_files.merge_parts(summary, report_url, started_at)


def _after(summary_url: str, written_parts: list[str]) -> str:
    del written_parts   # only waited for
    return summary_url


class WriteReport(beam.PTransform):
    """PCollection[FileReport] -> the report at `report_url`.

    Lines go to part files (no element held in memory beyond a part's
    lines) and the summary through a CombineGlobally, so millions of inputs
    need no single worker's memory. With merge=True the parts are then
    merged, by streaming, into one file sorted by input path with the
    summary last (report_files.merge_parts); otherwise they stay in
    REPORT.parts/RUN/, which `pii-blur review` and read_summary read too.

    settings: the run's settings, recorded in the summary line.
    """

    def __init__(self, report_url: str, started_at: float, settings: Optional[dict] = None, merge: bool = True):
        super().__init__()
        self.report_url = report_url
        self.started_at = started_at
        self.settings = settings or {}
        self.merge = merge

    def expand(self, reports):
        folder = report_files.run_folder(self.report_url, self.started_at)
        if on_dask(reports.pipeline):   # a line, not a fan-out (see transforms.anonymize.on_dask)
            return (reports
                    | "Gather" >> beam.combiners.ToList()
                    | "WriteAll" >> beam.Map(_write_all, folder_url=folder, report_url=self.report_url,
                                             started_at=self.started_at, settings=self.settings))
        parts = (reports
                 | "ToJson" >> beam.Map(report_files.report_line)
                 | "WriteParts" >> beam.ParDo(_WriteParts(folder)))
        summary = (reports
                   | "Count" >> beam.CombineGlobally(_CountReports())
                   | "WriteSummary" >> beam.Map(report_files.write_summary, folder_url=folder,
                                                started_at=self.started_at, settings=self.settings))
        # Both must be written before the merge: the summary is its main input,
        # and the parts' URLs a side input that makes it wait for them.
        written = summary | "AfterParts" >> beam.Map(_after, beam.pvalue.AsList(parts))
        if not self.merge:
            return written
        return written | "Merge" >> beam.Map(report_files.merge_parts, report_url=self.report_url,
                                             started_at=self.started_at)
