"""Building the Beam graph from parsed arguments (parsing lives in cli.py)."""

from __future__ import annotations

import dataclasses
from typing import Optional

import apache_beam as beam

from pii_blur import plan
from pii_blur.config import BlurConfig
from pii_blur.transforms import AnonymizeImages, MatchImages, WriteReport
from pii_blur.types import InputFile


@dataclasses.dataclass(frozen=True)
class RunArgs:
    """What to process, where to put it, and how.

    input: file, folder, glob or fsspec URL. output: folder or fsspec URL.
    report: report URL. started_at: time.time() at start, for the summary.
    workers: local worker processes. inputs: the input files when listed at
    launch (for runners that cannot rebalance work, see runners.py); None
    lists them inside the pipeline. shares: split the listed inputs into
    this many groups of about equal bytes, one per local worker
    (MatchImages); 0 fans out single paths. review: local folder for the HTML review
    page written after the run, or None. settings: the options the run was
    given, recorded in the report's summary. merge_report: merge the report's
    parts into one sorted file at the end (local and Dask runs), or leave them (WriteReport).
    """

    input: str
    output: str
    report: str
    config: BlurConfig
    started_at: float
    workers: int = 1
    inputs: Optional[tuple[InputFile, ...]] = None
    shares: int = 0
    review: Optional[str] = None
    settings: dict = dataclasses.field(default_factory=dict)
    merge_report: bool = True


def build(pipeline: beam.Pipeline, args: RunArgs):
    """Add the whole job to `pipeline`: match, detect, copy or blur, report.

    Returns the PCollection of FileReports (useful to tests).
    """
    reports = (
        pipeline
        | "MatchImages" >> MatchImages(args.input, args.output, listed=args.inputs, shares=args.shares,
                                report_url=args.report, planning=planning(args))
        | "Anonymize" >> AnonymizeImages(args.config)
    )
    _ = reports | "WriteReport" >> WriteReport(args.report, args.started_at, settings=args.settings,
                                          merge=args.merge_report)
    return reports


def planning(args: RunArgs) -> plan.Planning:
    """How the run's inputs are planned by listing (pii_blur.plan); the run's id is its start time."""
    return plan.Planning(args.config.fingerprint(), args.config.force, f"{args.started_at:.6f}")
