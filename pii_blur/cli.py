"""Command line: `pii-blur INPUT OUTPUT [MIN_PERCENTAGE_PROBABILITY]`.

Parsing and validation (`parse_args`) are separate from running (`run`), so
the CLI's checks can be tested without starting a pipeline.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from importlib import resources

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pii_blur import pipeline as pii_pipeline
from pii_blur import storage
from pii_blur.config import DEFAULT_CLASSES, REPORT_NAME, BlurConfig
from pii_blur.transforms.report import read_summary

LOG = logging.getLogger("pii_blur")
LOCAL_RUNNER = "FnApiRunner"
SAMPLE = "@sample"
# Beam's DirectRunner first tries to download and start Prism; its FnApiRunner
# never touches the network, so a local run always uses it.
LOCAL_RUNNER_ALIASES = {"directrunner", "fnapirunner", "direct", "fnapi"}


def make_parser() -> argparse.ArgumentParser:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        prog="pii-blur",
        description="Find faces and licence plates in photos and blur them. Every input ends "
                    "up in OUTPUT (blurred, or a byte-identical copy if nothing was found) or "
                    "in the report as skipped/failed.",
        epilog="Any other option goes to Apache Beam (e.g. --runner DataflowRunner --project ...). "
               "Default runner: Beam's local FnApiRunner with --workers processes, which never "
               "contacts the network (--runner DirectRunner means the same).")
    parser.add_argument("input", metavar="INPUT",
                        help="image file, folder (searched recursively), glob, or fsspec URL "
                             f"(s3://, gs://, memory://, file://); {SAMPLE} is a few sample photos "
                             "shipped with pii-blur")
    parser.add_argument("output", metavar="OUTPUT",
                        help="output folder or fsspec URL; mirrors INPUT's relative paths and file names")
    parser.add_argument("min_probability", metavar="MIN_PERCENTAGE_PROBABILITY", type=int, nargs="?",
                        default=40, help="detection confidence, 1-100 (default: 40, recommended); "
                                         "lower blurs more")
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                        help=f"comma-separated classes to blur (default: {','.join(DEFAULT_CLASSES)})")
    parser.add_argument("--report", default=None,
                        help=f"report path or URL (default: OUTPUT/{REPORT_NAME})")
    parser.add_argument("--force", action="store_true",
                        help="redo every input (default: off; a rerun skips inputs whose output is "
                             "complete and whose size, version and settings are unchanged)")
    parser.add_argument("--workers", type=int, default=cores,
                        help=f"local worker processes (default: number of cores, here {cores})")
    return parser


def parse_args(argv: list[str]) -> tuple[pii_pipeline.RunArgs, list[str]]:
    """Parse and validate; returns the run's arguments and Beam's pipeline arguments.

    Exits with status 2 and a message on invalid arguments.
    """
    parser = make_parser()
    known, pipeline_args = parser.parse_known_args(argv)
    if known.input == SAMPLE:
        known.input = str(resources.files("pii_blur") / "sample")
    if not 1 <= known.min_probability <= 100:
        parser.error("MIN_PERCENTAGE_PROBABILITY must be between 1 and 100")
    if known.workers < 1:
        parser.error("--workers must be at least 1")
    classes = tuple(c.strip() for c in known.classes.split(",") if c.strip())
    config = BlurConfig(classes=classes, min_probability=known.min_probability / 100,
                        threads=max(1, (os.cpu_count() or 1) // known.workers), force=known.force)
    try:
        config.backends()
    except ValueError as error:
        parser.error(str(error))
    if storage.is_same_or_inside(known.output, _input_root(known.input)):
        parser.error("OUTPUT must not be INPUT or inside it")
    report = known.report or storage.join_url(known.output, REPORT_NAME)
    args = pii_pipeline.RunArgs(input=known.input, output=known.output, report=report,
                                config=config, started_at=time.time())
    return args, local_runner_args(pipeline_args, known.workers)


def _input_root(input_spec: str) -> str:
    """The folder an input spec stands for: the folder itself, a glob's fixed prefix."""
    parts = input_spec.split("/")
    for index, part in enumerate(parts):
        if any(char in part for char in storage.GLOB_CHARS):
            return "/".join(parts[:index]) or "."
    return input_spec


def local_runner_args(pipeline_args: list[str], workers: int) -> list[str]:
    """Beam arguments with the local runner made explicit (and offline).

    No --runner, or DirectRunner, becomes the FnApiRunner with `workers`
    processes (or in-memory for one). Other runners pass through untouched.
    """
    runner_parser = argparse.ArgumentParser(add_help=False)
    runner_parser.add_argument("--runner")
    runner_parser.add_argument("--direct_running_mode")
    chosen, rest = runner_parser.parse_known_args(pipeline_args)
    if chosen.runner is not None and chosen.runner.lower() not in LOCAL_RUNNER_ALIASES:
        return pipeline_args
    mode = chosen.direct_running_mode or ("multi_processing" if workers > 1 else "in_memory")
    if not any(a.startswith("--direct_num_workers") for a in rest):
        rest.append(f"--direct_num_workers={workers}")
    if not any(a.startswith("--default_sdk_harness_log_level") for a in rest):
        rest.append("--default_sdk_harness_log_level=WARNING")
    return [f"--runner={LOCAL_RUNNER}", f"--direct_running_mode={mode}"] + rest


def run(args: pii_pipeline.RunArgs, pipeline_args: list[str]) -> dict:
    """Run the job to completion; returns the report's summary line."""
    removed = storage.remove_stale_temps(args.output)
    if removed:
        LOG.warning("removed %d temporary files left by an interrupted run", removed)
    options = PipelineOptions(pipeline_args, save_main_session=False)
    with beam.Pipeline(options=options) as pipeline:
        pii_pipeline.build(pipeline, args)
    return read_summary(args.report)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args, pipeline_args = parse_args(sys.argv[1:] if argv is None else argv)
    summary = run(args, pipeline_args)
    print(f"pii-blur: {summary['files']} files: {summary['copied']} copied, {summary['blurred']} blurred, "
          f"{summary['skipped']} skipped, {summary['failed']} failed in {summary['total_seconds']:.1f} s; "
          f"report: {args.report}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
