"""DoFns that read, detect, and then either copy or blur-and-write each image.

Every input leaves as exactly one FileReport. Any error becomes a `failed`
report (a dead letter), and nothing is written for that input, so a file
whose detection failed is never published as if it were clean.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from pii_blur import anonymize, imageio, manifest, storage
from pii_blur.config import BlurConfig
from pii_blur.metadata import MetadataWriter
from pii_blur.models import create_detector
from pii_blur.types import Detection, FileReport, InputFile, Status

LOG = logging.getLogger(__name__)
NAMESPACE = "pii_blur"
TO_COPY = "copy"
TO_REPORT = "report"


@dataclasses.dataclass
class DetectedImage:
    """An input after detection, before it is written.

    data: the exact input bytes that detection ran on; these, and only
    these, are what gets copied or blurred.
    """

    input: InputFile
    data: bytes
    image: Optional[imageio.DecodedImage]
    detections: list[Detection]
    near_misses: list[Detection]
    timings: dict[str, float]


def failed(input_file: InputFile, reason: str, **fields) -> FileReport:
    Metrics.counter(NAMESPACE, Status.FAILED.value).inc()
    LOG.warning("failed: %s: %s", input_file.url, reason)
    return FileReport(path=input_file.url, status=Status.FAILED, reason=reason, **fields)


def describe(error: Exception) -> str:
    if isinstance(error, imageio.ImageError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class _DetectFn(beam.DoFn):
    """InputFile -> DetectedImage (main: something found), tagged `copy` (nothing
    found) or tagged `report` (skipped or failed)."""

    def __init__(self, config: BlurConfig):
        self.config = config
        self.detectors = None

    def setup(self):
        self.detectors = [create_detector(name, self.config.detector_config()) for name in self.config.backends()]

    def process(self, input_file: InputFile):
        if not self.config.force:
            previous = manifest.load_current(input_file, self.config.fingerprint())
            if previous is not None:
                Metrics.counter(NAMESPACE, "resumed").inc()
                yield beam.pvalue.TaggedOutput(TO_REPORT, previous)
                return
        timings = {}
        started = time.perf_counter()
        try:
            if storage.is_same_or_inside(input_file.output_url, input_file.url):
                raise ValueError("output path would overwrite the input")
            data = storage.read_bytes(input_file.url)
        except Exception as error:  # noqa: BLE001 - every error becomes a report line
            yield beam.pvalue.TaggedOutput(TO_REPORT, failed(input_file, f"read failed: {describe(error)}"))
            return
        timings["read"] = time.perf_counter() - started
        if not data:
            yield beam.pvalue.TaggedOutput(TO_REPORT, failed(input_file, "empty file (0 bytes)", size_bytes=0))
            return
        if imageio.sniff_format(data[:32]) is None:
            Metrics.counter(NAMESPACE, Status.SKIPPED.value).inc()
            yield beam.pvalue.TaggedOutput(TO_REPORT, FileReport(
                path=input_file.url, status=Status.SKIPPED, reason="not an image (by content)",
                size_bytes=len(data)))
            return
        try:
            started = time.perf_counter()
            image = imageio.decode(data)
            timings["decode"] = time.perf_counter() - started
            started = time.perf_counter()
            detections, near_misses = anonymize.detect(image, self.detectors, set(self.config.classes))
            timings["detect"] = time.perf_counter() - started
        except Exception as error:  # noqa: BLE001
            yield beam.pvalue.TaggedOutput(TO_REPORT, failed(
                input_file, describe(error), size_bytes=len(data), timings=timings))
            return
        detected = DetectedImage(input_file, data, image, detections, near_misses, timings)
        if detections:
            yield detected
        else:
            detected.image = None  # not needed for a copy; let it be freed
            yield beam.pvalue.TaggedOutput(TO_COPY, detected)


class _CopyFn(beam.DoFn):
    """DetectedImage with no detections -> byte-identical copy -> FileReport."""

    def __init__(self, config: BlurConfig):
        self.config = config

    def process(self, detected: DetectedImage):
        started = time.perf_counter()
        try:
            storage.write_atomic(detected.input.output_url, detected.data)
        except Exception as error:  # noqa: BLE001
            yield failed(detected.input, f"write failed: {describe(error)}", size_bytes=len(detected.data))
            return
        detected.timings["write"] = time.perf_counter() - started
        Metrics.counter(NAMESPACE, Status.COPIED.value).inc()
        report = FileReport(path=detected.input.url, status=Status.COPIED, output=detected.input.output_url,
                            near_misses=detected.near_misses, timings=detected.timings,
                            size_bytes=len(detected.data))
        manifest.record_finished(detected.input, report, self.config.fingerprint())
        yield report


class _BlurFn(beam.DoFn):
    """DetectedImage with detections -> blurred file with metadata -> FileReport."""

    def __init__(self, config: BlurConfig):
        self.config = config
        self.metadata = None

    def setup(self):
        self.metadata = MetadataWriter()

    def teardown(self):
        if self.metadata is not None:
            self.metadata.close()

    def process(self, detected: DetectedImage):
        timings = detected.timings
        try:
            started = time.perf_counter()
            rendered = anonymize.render_blurred(detected.image, detected.detections, detected.data, self.metadata)
            timings["blur_encode"] = time.perf_counter() - started
            started = time.perf_counter()
            storage.write_atomic(detected.input.output_url, rendered.data)
            timings["write"] = time.perf_counter() - started
        except Exception as error:  # noqa: BLE001
            yield failed(detected.input, f"blur or write failed: {describe(error)}",
                         detections=detected.detections, size_bytes=len(detected.data), timings=timings)
            return
        Metrics.counter(NAMESPACE, Status.BLURRED.value).inc()
        for detection in detected.detections:
            Metrics.counter(NAMESPACE, f"detections_{detection.label}").inc()
        report = FileReport(path=detected.input.url, status=Status.BLURRED, output=detected.input.output_url,
                            detections=detected.detections, near_misses=detected.near_misses, timings=timings,
                            size_bytes=len(detected.data), encoding=rendered.encoding)
        manifest.record_finished(detected.input, report, self.config.fingerprint())
        yield report


class AnonymizeImages(beam.PTransform):
    """PCollection[InputFile] -> PCollection[FileReport], one report per input.

    Detect, then branch: untouched images are copied byte for byte, the others
    are blurred and re-encoded with their metadata. Both are written atomically.
    """

    def __init__(self, config: BlurConfig):
        super().__init__()
        self.config = config

    def expand(self, inputs):
        detected = inputs | "Detect" >> beam.ParDo(_DetectFn(self.config)).with_outputs(
            TO_COPY, TO_REPORT, main="blur")
        copied = detected[TO_COPY] | "Copy" >> beam.ParDo(_CopyFn(self.config))
        blurred = detected.blur | "BlurAndWrite" >> beam.ParDo(_BlurFn(self.config))
        return (copied, blurred, detected[TO_REPORT]) | "AllReports" >> beam.Flatten()
