"""Command line: `pii-blur INPUT OUTPUT [MIN_PERCENTAGE_PROBABILITY]`.

Parsing and validation (`parse_args`) are separate from running (`run`), so
the CLI's checks can be tested without starting a pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import os
import sys
import time
from importlib import resources

# Beam's import warns through the root logger when Google's API clients are not
# installed (a plain `pip install`). With no handler there, logging would give the
# root a stderr handler of its own, and the terminal would then show every
# library's INFO records. The real handlers come in main (logs.configure).
logging.getLogger().addHandler(logging.NullHandler())

# Nothing that the imports below create is garbage, yet Python's cyclic collector
# would walk them some 350 times while Beam loads, twice in full (0.11 s of a 1.6 s
# one-photo run). So it pauses for them, and they go to the collector's permanent
# generation, as main's gc.freeze does with what parsing adds.
gc.disable()
import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from pii_blur import pipeline as pii_pipeline  # noqa: E402
from pii_blur import logs, metadata, plan, progress, review, storage  # noqa: E402
from pii_blur.anonymize import PROJECTIONS  # noqa: E402
from pii_blur.blur import DEFAULT_MODE, MODES  # noqa: E402
from pii_blur.config import DEFAULT_BACKENDS, DEFAULT_CLASSES, REPORT_NAME, BlurConfig, prepare_models  # noqa: E402
from pii_blur.imageio import MAX_PIXELS  # noqa: E402
from pii_blur.models.base import DEFAULT_PRECISION, DEVICES, PRECISIONS, build_ahead  # noqa: E402
from pii_blur.models.model_config import ModelConfigError, load_model_config  # noqa: E402
from pii_blur.pipeline import runners  # noqa: E402
from pii_blur.report_files import iter_report, read_summary, unreported  # noqa: E402

gc.freeze()
gc.enable()

LOG = logging.getLogger("pii_blur")
SAMPLE = "@sample"


def make_parser() -> argparse.ArgumentParser:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        prog="pii-blur",
        allow_abbrev=False,  # never swallow a Beam option such as --project as an abbreviation
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
                        help=f"comma-separated classes to blur (default: {','.join(DEFAULT_CLASSES)}); other "
                             "classes, e.g. person,car,truck to blur whole people and vehicles, need a model "
                             "from --models")
    parser.add_argument("--models", default=None, metavar="CONFIG",
                        help="YAML or JSON file (path or fsspec URL) choosing the model for each class: backend "
                             "(onnx-yolo, tensorflow, imageai or a built-in), model file path or URL, optional "
                             "sha256 and class labels; see the README's 'Models and backends' (default: none, "
                             + ", ".join(f"{label} by {name}" for label, name in DEFAULT_BACKENDS.items()) + ")")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where models run: cuda needs onnxruntime-gpu (pii-blur[gpu]), and a GPU build of "
                             "TensorFlow or torch for those backends; checked at start-up (default: cpu)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="weights of the built-in ONNX models: int8 (statically quantised, 1.3-2.5x as "
                             "fast on CPU) or fp32 (default: each model's measured choice, "
                             + ", ".join(f"{name} {precision}" for name, precision in DEFAULT_PRECISION.items())
                             + ")")
    parser.add_argument("--report", default=None,
                        help=f"report path or URL (default: OUTPUT/{REPORT_NAME})")
    parser.add_argument("--projection", choices=PROJECTIONS, default="auto",
                        help="auto: equirectangular when XMP GPano says so or the image is 2:1 (within 1%%), "
                             "then faces and plates are searched over the whole sphere; perspective: every "
                             "image as a flat photo (default: auto)")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                        help="how each face or plate is covered: blur (Gaussian), pixelate (a mosaic of "
                             "blocks) or fill (its mean colour), each over an ellipse taking in the whole "
                             f"object with a feathered edge (default: {DEFAULT_MODE})")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help=f"images with more pixels fail, checked before decoding (default: {MAX_PIXELS})")
    parser.add_argument("--force", action="store_true",
                        help="redo every input (default: off; a rerun skips inputs whose output is "
                             "complete and whose size, version and settings are unchanged)")
    parser.add_argument("--review", nargs="?", const="pii-blur-review", default=None, metavar="DIR",
                        help="after the run, write an HTML review page of the blurred outputs and near misses "
                             "to local folder DIR (default: off; DIR defaults to ./pii-blur-review). "
                             "Also: pii-blur review REPORT DIR")
    parser.add_argument("--workers", type=int, default=cores,
                        help=f"local workers: threads of one process up to {runners.THREADS_UP_TO}, "
                             f"processes beyond (--direct_running_mode chooses), and Dask LocalCluster "
                             f"workers (default: number of cores, here {cores})")
    parser.add_argument("--threads", type=int, default=1,
                        help="model threads per worker (default: 1, so that --workers workers "
                             "keep that many cores busy without oversubscribing them; raise it when there "
                             "are fewer workers than cores, e.g. one worker per GPU)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show Beam's and the libraries' warnings on the terminal too (default: off; they "
                             "always go to the run's log file under OUTPUT/.pii-blur/logs/)")
    parser.add_argument("--summary-json", default=None, metavar="PATH",
                        help="also write the run's summary (the report's last line: counts per status, "
                             "detections, seconds) as JSON to PATH, a local path or fsspec URL, atomically, "
                             "for schedulers to alert on failed > 0 (default: off)")
    parser.add_argument("--dask-address", default=None,
                        help="with --runner dask: scheduler address, e.g. tcp://HOST:8786 (default: start a "
                             "LocalCluster of --workers processes on 127.0.0.1 for the run)")
    return parser


def parse_args(argv: list[str]) -> tuple[pii_pipeline.RunArgs, runners.RunnerPlan]:
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
    if known.threads < 1:
        parser.error("--threads must be at least 1")
    if known.max_pixels < 1:
        parser.error("--max-pixels must be at least 1")
    classes = tuple(c.strip() for c in known.classes.split(",") if c.strip())
    models = ()
    if known.models:
        try:
            models = load_model_config(known.models)
        except ModelConfigError as error:
            parser.error(f"--models: {error}")
    config = BlurConfig(classes=classes, min_probability=known.min_probability / 100,
                        threads=known.threads, force=known.force,
                        projection=known.projection, max_pixels=known.max_pixels, device=known.device,
                        models=models, mode=known.mode, precision=known.precision)
    try:
        config.backends()
    except ValueError as error:
        parser.error(str(error))
    unused = sorted({c for spec in models for c in spec.classes} - set(classes))
    if unused:
        LOG.warning("--models configures %s, which --classes does not ask for (--classes %s)", unused,
                    ",".join(classes))
    try:
        config = prepare_models(config)
    except (ValueError, ImportError, OSError, RuntimeError) as error:
        parser.error(f"cannot use the models: {error}")
    report = _check_locations(parser, known)
    _check_summary_json(parser, known)
    runner = runners.plan(pipeline_args, known.workers, known.dask_address)
    if runner.is_local and not metadata.exiftool_available():   # remote workers bring their own (Worker image)
        parser.error("exiftool is not installed; it restores the blurred photos' metadata "
                     "(Debian/Ubuntu: apt-get install libimage-exiftool-perl)")
    args = pii_pipeline.RunArgs(input=known.input, output=known.output, report=report,
                                config=config, started_at=time.time(), workers=known.workers,
                                review=known.review, settings=_settings(known),
                                merge_report=runner.is_local or runner.is_dask)
    return args, runner


def _settings(known: argparse.Namespace) -> dict:
    """The options that decide what is blurred, for the report's summary (and the review's re-run commands)."""
    names = ("min_probability", "classes", "models", "projection", "mode", "precision")
    return {name: getattr(known, name) for name in names if getattr(known, name, None) is not None}


def _check_locations(parser: argparse.ArgumentParser, known: argparse.Namespace) -> str:
    """Refuse INPUT, OUTPUT and --report that are empty, missing, unwritable, or
    would write over an input; returns the report's URL."""
    for name, value in (("INPUT", known.input), ("OUTPUT", known.output), ("--report", known.report)):
        if value is not None and not value.strip():
            parser.error(f"{name} is empty (an unset shell variable?)")
    input_root = storage.input_root(known.input)
    if storage.is_local_path(input_root) and not storage.exists(input_root):
        parser.error(f"INPUT not found: {known.input}")
    if storage.is_same_or_inside(known.output, input_root):
        parser.error("OUTPUT must not be INPUT or inside it")
    if storage.is_local_file(known.output):
        parser.error(f"OUTPUT {known.output} is an existing file; it must be a folder (quote globs in INPUT)")
    report = known.report or storage.join_url(known.output, REPORT_NAME)
    _refuse_unsafe_target(parser, "--report", report, input_root)
    for name, folder in (("OUTPUT", known.output), ("--report", storage.parent_url(report))):
        _refuse_unwritable(parser, name, folder)
    return report


def _refuse_unsafe_target(parser: argparse.ArgumentParser, option: str, url: str, input_root: str) -> None:
    """Refuse a file the run writes besides its outputs (--report, --summary-json) that is
    an input, lies inside INPUT, or is a symbolic link."""
    if storage.is_same_or_inside(url, input_root):
        parser.error(f"{option} {url} must not be an input or lie inside INPUT")
    if storage.is_local_path(url) and os.path.islink(storage.local_path(url)):
        parser.error(f"{option} {url} is a symbolic link; name the file itself")


def _refuse_unwritable(parser: argparse.ArgumentParser, name: str, folder: str) -> None:
    problem = storage.unwritable(folder)
    if problem:
        parser.error(f"{name} folder {folder} cannot be written: {problem}")


def _check_summary_json(parser: argparse.ArgumentParser, known: argparse.Namespace) -> None:
    """Refuse a --summary-json that is empty, inside INPUT, a link, or in a folder that cannot be written."""
    path = known.summary_json
    if path is None:
        return
    if not path.strip() or path.endswith("/"):
        parser.error("--summary-json must name a file")
    _refuse_unsafe_target(parser, "--summary-json", path, storage.input_root(known.input))
    _refuse_unwritable(parser, "--summary-json", storage.parent_url(path))


def write_summary_json(summary: dict, url: str) -> None:
    """The run's summary as one JSON object at `url` (local or fsspec), written atomically."""
    storage.write_atomic(url, (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode())


def run(args: pii_pipeline.RunArgs, runner: runners.RunnerPlan) -> dict:
    """Run the job to completion; returns the report's summary line.

    Local runs show their progress (pii_blur.progress) on stderr.
    """
    if runner.is_in_process:   # the workers' models load while Beam builds and starts the pipeline
        build_ahead(args.config.backends(), args.config.detector_config())
    removed = storage.remove_stale_temps(args.output)
    if removed:
        LOG.warning("removed %d temporary files left by an interrupted run", removed)
    planning = pii_pipeline.planning(args)
    if runner.is_dask:   # the DaskRunner needs the inputs listed at launch (runners.dask_args)
        args = dataclasses.replace(args, inputs=tuple(plan.list_planned(args.input, args.output, args.report,
                                                                        planning)))
    elif runner.is_fnapi:   # each worker gets an equal share (MatchImages), and every input is checked in the report
        args = dataclasses.replace(args, inputs=tuple(plan.list_planned(args.input, args.output, args.report,
                                                                        planning)),
                                   shares=args.workers)
    monitor = contextlib.nullcontext()
    if runner.is_local:
        progress_dir = progress.make_progress_dir()
        args = dataclasses.replace(args, config=dataclasses.replace(args.config, progress_dir=progress_dir))
        monitor = progress.ProgressMonitor(progress_dir, functools.partial(len, args.inputs))   # listed above
    with monitor:
        if not runner.is_dask:
            _run_beam(args, runner.beam_args)
        else:
            with runners.dask_cluster(runner.dask_address, args.workers) as address:
                _run_beam(args, runners.dask_args(runner.beam_args, address, args.workers, len(args.inputs)))
    try:   # so that the next run reads no record per finished input (pii_blur.plan)
        plan.write_index(args.output, iter_report(args.report), planning.run_id)
    except (OSError, ValueError) as error:
        LOG.warning("could not write the index of finished inputs (the next run reads their records): %s", error)
    summary = read_summary(args.report)
    if args.inputs is not None:   # listed at launch: each must have its report line
        summary["unreported"] = _unreported(args)
    return summary


def _unreported(args: pii_pipeline.RunArgs) -> int:
    """How many inputs listed at launch have no report line; the first few are logged as errors."""
    missing = unreported((item.url for item in args.inputs), args.report)
    for url in missing[:SHOWN_FAILURES]:
        LOG.error("no report line for %s: the runner lost it (run again: the next run reports it)", url)
    if len(missing) > SHOWN_FAILURES:
        LOG.error("... and %d more inputs without a report line", len(missing) - SHOWN_FAILURES)
    return len(missing)


def _run_beam(args: pii_pipeline.RunArgs, beam_args: list[str]) -> None:
    options = PipelineOptions(beam_args, save_main_session=False)
    pipeline = beam.Pipeline(options=options)
    pii_pipeline.build(pipeline, args)
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)   # the DaskRunner's scheduler connection
        if client is not None:
            client.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["review"]:
        logging.basicConfig(level=logging.WARNING, format=logs.FORMAT)
        return review.main(argv[1:])
    log_path = logs.configure(verbose=bool({"-v", "--verbose"} & set(argv)))
    args, runner = parse_args(argv)
    gc.freeze()   # the launcher's imports stay alive to the end: spare them the collection at exit (0.7 s)
    try:
        summary = run(args, runner)
    except FileNotFoundError as error:   # INPUT vanished, or a remote INPUT that matches nothing
        print(f"pii-blur: error: {error}", file=sys.stderr)
        return 2
    finally:
        logs.keep(log_path, args.output)
    summary_json = make_parser().parse_known_args(argv)[0].summary_json
    if summary_json:
        write_summary_json(summary, summary_json)
    _list_failures(args.report, summary["failed"])
    print(f"pii-blur: {summary['files']} files: {summary['copied']} copied, {summary['cleaned']} cleaned of "
          f"stale previews, {summary['blurred']} blurred, "
          f"{summary['skipped']} skipped, {summary['failed']} failed in {summary['total_seconds']:.1f} s; "
          f"report: {args.report}")
    if args.review:
        print(f"pii-blur: review page: {review.build_review(args.report, args.review)}")
    if summary.get("unreported"):
        return 3
    return 1 if summary["failed"] else 0


SHOWN_FAILURES = 3


def _list_failures(report_url: str, failed: int) -> None:
    """The first few failed inputs and why, on stderr (the report has them all)."""
    if not failed:
        return
    shown = 0
    for record in iter_report(report_url):
        if record.get("status") == "failed":
            LOG.warning("failed: %s: %s", record["path"], record["reason"])
            shown += 1
            if shown == SHOWN_FAILURES:
                break
    if failed > shown:
        LOG.warning("... and %d more failed inputs: see the report", failed - shown)


if __name__ == "__main__":
    sys.exit(main())
