"""Building the Beam graph from parsed arguments (parsing lives in cli.py)."""

from __future__ import annotations

import dataclasses

import apache_beam as beam

from pii_blur.config import BlurConfig
from pii_blur.transforms import AnonymizeImages, MatchImages, WriteReport


@dataclasses.dataclass(frozen=True)
class RunArgs:
    """What to process, where to put it, and how.

    input: file, folder, glob or fsspec URL. output: folder or fsspec URL.
    report: report URL. started_at: time.time() at start, for the summary.
    """

    input: str
    output: str
    report: str
    config: BlurConfig
    started_at: float


def build(pipeline: beam.Pipeline, args: RunArgs):
    """Add the whole job to `pipeline`: match, detect, copy or blur, report.

    Returns the PCollection of FileReports (useful to tests).
    """
    reports = (
        pipeline
        | "Match" >> MatchImages(args.input, args.output)
        | "Anonymize" >> AnonymizeImages(args.config)
    )
    _ = reports | "Report" >> WriteReport(args.report, args.started_at)
    return reports
