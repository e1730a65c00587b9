"""AnonymizeImages: the whole per-file graph, as the design card draws it.

    InputFile -> ReadImages -> ProjectViews -> DetectPII -> MergeDetections
              -> RouteImages -> untouched: CopyUntouched
                             -> found:     BlurImages -> WriteImages
                             -> done:      (reports that ended an input earlier)
              -> FileReport, one per input

Every step is a small PTransform of its own (transforms/read.py, detect.py,
write.py), fused with the next after the one Reshuffle of paths, so decoded
pixels stay in the memory of the worker that decoded them. An input that a
step cannot take further leaves as a `failed` (or `skipped`, or resumed)
report and passes around the later steps: nothing is lost, and an image
whose detection failed is never published as if it were clean.
"""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.utils import shared

from pii_blur import progress
from pii_blur.config import BlurConfig
from pii_blur.transforms.detect import (DetectPII, MergeDetections, ProjectViews, ViewsModelHandler, merge_detections,
                                       project_views)
from pii_blur.transforms.elements import ViewedInput
from pii_blur.transforms.read import ReadFn, ReadImages
from pii_blur.transforms.reports import NAMESPACE
from pii_blur.transforms.write import (DONE, FOUND, UNTOUCHED, BlurImages, CopyUntouched, RouteImages, WriteImages,
                                      blur_element, CopyFn, WriteFn, route_of)
from pii_blur.types import FileReport, Status

LOG = logging.getLogger(__name__)


def _finish(report: FileReport, progress_dir) -> FileReport:
    """Count the report in Beam's metrics (per status, per detected class) and in the progress display."""
    if report.resumed:
        Metrics.counter(NAMESPACE, "resumed").inc()
    else:
        Metrics.counter(NAMESPACE, report.status.value).inc()
        if report.status == Status.BLURRED:
            for detection in report.detections:
                Metrics.counter(NAMESPACE, f"detections_{detection.label}").inc()
    if report.status == Status.FAILED:
        LOG.info("failed: %s: %s", report.path, report.reason)   # listed by the launcher at the end
    if progress_dir:
        progress.tick(progress_dir)
    return report


def on_dask(pipeline: beam.Pipeline) -> bool:
    """True when `pipeline` runs on Beam's DaskRunner.

    Beam 2.77's DaskRunner computes only one consumer of a PCollection that
    has several, and sends every tagged output to every consumer
    (tests/test_dask.py shows both), so there the graph must be a line.
    """
    runner = pipeline.options.view_as(StandardOptions).runner or ""
    return "dask" in str(runner).lower()


class _AllStepsFn(beam.DoFn):
    """The same steps, in one DoFn, for runners whose graphs must be a line (Dask):
    read, project, detect with each model, merge, then copy, or blur and write."""

    def __init__(self, config: BlurConfig):
        self.config = config
        self.shared_models = shared.Shared()
        self.read, self.copy, self.write = ReadFn(config), CopyFn(config), WriteFn(config)
        self.models = None

    def setup(self):
        for step in (self.read, self.copy, self.write):
            step.setup()
        handlers = [ViewsModelHandler(name, self.config.detector_config(), self.config.threads)
                    for name in self.config.backends()]
        self.models = self.shared_models.acquire(lambda: _Models((h, h.load_model()) for h in handlers),
                                                 tag=self.config.fingerprint())

    def teardown(self):
        for step in (self.copy, self.write):
            step.teardown()

    def process(self, input_file):
        element = project_views(next(self.read.process(input_file)))
        for handler, model in self.models:
            if isinstance(element, ViewedInput):
                [element] = handler.run_inference([element], model)
        element = merge_detections(element, frozenset(self.config.classes))
        route = route_of(element)
        if route == UNTOUCHED:
            yield from self.copy.process(element)
        elif route == FOUND:
            yield from self.write.process(blur_element(element, self.config.mode))
        else:
            yield element


class _Models(list):
    """(handler, model) pairs of one worker process (a list that Shared can weak-reference)."""


class AnonymizeImages(beam.PTransform):
    """PCollection[InputFile] -> PCollection[FileReport], one report per input.

    Each file is read, its views searched by every detector, then either
    copied byte for byte (nothing found) or blurred and re-encoded with its
    metadata; both are written atomically.
    """

    def __init__(self, config: BlurConfig):
        super().__init__()
        self.config = config

    def expand(self, inputs):
        dask = on_dask(inputs.pipeline)
        if dask:
            reports = inputs | "AllSteps" >> beam.ParDo(_AllStepsFn(self.config)).with_output_types(FileReport)
            return reports | "CountReports" >> beam.Map(_finish, progress_dir=self.config.progress_dir)
        viewed = (inputs
                  | "ReadImages" >> ReadImages(self.config)
                  | "ProjectViews" >> ProjectViews())
        detected, failed = viewed | "DetectPII" >> DetectPII(self.config, separate_failures=True)
        staged = detected | "MergeDetections" >> MergeDetections(self.config.classes)
        routes = staged | "RouteImages" >> RouteImages()
        copied = routes[UNTOUCHED] | "CopyUntouched" >> CopyUntouched(self.config)
        written = (routes[FOUND]
                   | "BlurImages" >> BlurImages(self.config.mode)
                   | "WriteImages" >> WriteImages(self.config))
        return ((routes[DONE], failed, copied, written)
                | "AllReports" >> beam.Flatten()
                | "CountReports" >> beam.Map(_finish, progress_dir=self.config.progress_dir).with_output_types(FileReport))
