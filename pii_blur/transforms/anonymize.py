"""The per-file DoFn: read, detect, then copy or blur, write, and report.

Every input leaves as exactly one FileReport. Any error becomes a `failed`
report (a dead letter) and nothing is written for that input, so a file
whose detection failed is never published as if it were clean.

The branch (untouched -> byte-identical copy, found -> blur and re-encode)
happens inside one DoFn on purpose: decoded pixels then never leave the
worker that decoded them, whatever the runner fuses or splits, and runners
with weak multi-output support (Beam's DaskRunner sends every tagged output
to every consumer) behave the same as the others.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import socket
import time

import apache_beam as beam
import cv2
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from pii_blur import anonymize, imageio, manifest, plan, progress, storage
from pii_blur.config import BlurConfig
from pii_blur.metadata import MetadataWriter
from pii_blur.models import create_detector
from pii_blur.types import FileReport, InputFile, Status

LOG = logging.getLogger(__name__)
NAMESPACE = "pii_blur"


class _Rejected(Exception):
    """Ends one file's processing with a report (failed or skipped)."""

    def __init__(self, report: FileReport):
        super().__init__(report.reason)
        self.report = report


@dataclasses.dataclass
class _Detected:
    """One input after detection. data: the exact bytes detection ran on;
    these, and only these, are copied or blurred."""

    input: InputFile
    data: bytes
    image: imageio.DecodedImage
    found: anonymize.Found
    timings: dict[str, float]


class _Detectors(list):
    """The detectors of one worker process (a list that Shared can weak-reference)."""


def _load_detectors(config: BlurConfig) -> _Detectors:
    return _Detectors(create_detector(name, config.detector_config()) for name in config.backends())


def worker_id() -> str:
    """host:pid of the process doing the work, for the audit trail."""
    return f"{socket.gethostname()}:{os.getpid()}"


def describe(error: Exception) -> str:
    if isinstance(error, imageio.ImageError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class AnonymizeFn(beam.DoFn):
    """InputFile -> FileReport, writing the copied or blurred output on the way.

    Models are loaded once per worker process and shared by all its threads
    and bundles (some runners, like Dask, call setup() for every partition);
    exiftool runs as one long-lived process per DoFn instance.
    """

    def __init__(self, config: BlurConfig):
        self.config = config
        self.shared_models = shared.Shared()
        self.detectors = None
        self.metadata = None

    def setup(self):
        # OpenCV's own thread pool would oversubscribe the cores that the
        # --workers processes already keep busy.
        cv2.setNumThreads(self.config.threads)
        self.detectors = self.shared_models.acquire(lambda: _load_detectors(self.config),
                                                    tag=self.config.fingerprint())
        self.metadata = MetadataWriter()
        # Beam, the models and their libraries leave millions of long-lived
        # objects; frozen, they are skipped by every later collection and by
        # the one at exit, which took 0.7 s per worker (workers stop one
        # after another at the end of a local run).
        gc.freeze()

    def teardown(self):
        if self.metadata is not None:
            self.metadata.close()

    def process(self, input_file: InputFile):
        report = self._process(input_file)
        if self.config.progress_dir:
            progress.tick(self.config.progress_dir)
        yield report

    def _process(self, input_file: InputFile) -> FileReport:
        if input_file.problem:
            Metrics.counter(NAMESPACE, Status.FAILED.value).inc()
            LOG.info("failed: %s: %s", input_file.url, input_file.problem)
            return self._failed(input_file, input_file.problem)
        fingerprint = self.config.fingerprint()
        previous = None
        if isinstance(input_file, plan.FinishedInput):   # planned by listing: no read, or one of its record
            previous = plan.finished_report(input_file, fingerprint)
        elif not self.config.force and not isinstance(input_file, plan.TodoInput):   # not planned
            previous = manifest.load_current(input_file, fingerprint)
        if previous is not None:
            Metrics.counter(NAMESPACE, "resumed").inc()
            return previous
        try:
            detected = self._detect(input_file)
            report = self._blur(detected) if detected.found.to_blur else self._copy(detected)
        except _Rejected as rejected:
            report = rejected.report
            Metrics.counter(NAMESPACE, report.status.value).inc()
            if report.status == Status.FAILED:
                LOG.info("failed: %s: %s", input_file.url, report.reason)   # listed by the launcher at the end
            return report
        try:
            manifest.record_finished(input_file, report, fingerprint)
            manifest.remove_records(getattr(input_file, "stale_records", ()))
        except Exception as error:  # noqa: BLE001 - losing the record only costs the resume
            LOG.warning("could not record %s for resuming: %s", input_file.url, describe(error))
        Metrics.counter(NAMESPACE, report.status.value).inc()
        for detection in report.detections:
            Metrics.counter(NAMESPACE, f"detections_{detection.label}").inc()
        return report

    def _detect(self, input_file: InputFile) -> _Detected:
        timings = {}
        started = time.perf_counter()
        if input_file.size is not None and input_file.size > self.config.max_file_bytes:
            raise _Rejected(self._failed(input_file, f"file too large: {input_file.size} bytes "
                                                     f"(limit {self.config.max_file_bytes})",
                                         size_bytes=input_file.size))
        try:
            if storage.is_same_or_inside(input_file.output_url, input_file.url):
                raise ValueError("output path would overwrite the input")
            data = storage.read_bytes(input_file.url)
        except Exception as error:  # noqa: BLE001 - every error becomes a report line
            raise _Rejected(self._failed(input_file, f"read failed: {describe(error)}"))
        timings["read"] = time.perf_counter() - started
        if not data:
            raise _Rejected(self._failed(input_file, "empty file (0 bytes)", size_bytes=0))
        if imageio.sniff_format(data[:32]) is None:
            raise _Rejected(FileReport(path=input_file.url, status=Status.SKIPPED, size_bytes=len(data),
                                       reason="not an image (by content)", worker=worker_id()))
        try:
            started = time.perf_counter()
            image = imageio.decode(data, max_pixels=self.config.max_pixels)
            timings["decode"] = time.perf_counter() - started
            started = time.perf_counter()
            projection = anonymize.projection_of(image, data, self.config.projection)
            found = anonymize.detect(image, self.detectors, set(self.config.classes), projection)
            timings["detect"] = time.perf_counter() - started
        except Exception as error:  # noqa: BLE001
            raise _Rejected(self._failed(input_file, describe(error), size_bytes=len(data), timings=timings))
        return _Detected(input_file, data, image, found, timings)

    def _copy(self, detected: _Detected) -> FileReport:
        """Nothing found: the output is the input's exact bytes, unless its
        embedded pictures do not show what its pixels show; then they are removed."""
        started = time.perf_counter()
        stale = anonymize.stale_pictures(detected.image, detected.data)
        status, data, actions = Status.COPIED, detected.data, []
        try:
            if stale:
                rendered = anonymize.render_cleaned(detected.image, detected.data, self.metadata)
                status, data = Status.CLEANED, rendered.data
                actions = [f"stale: {description}" for description in stale] + list(rendered.pictures)
            storage.write_atomic(detected.input.output_url, data, root=detected.input.output_root)
        except Exception as error:  # noqa: BLE001
            raise _Rejected(self._failed(detected.input, f"clean or write failed: {describe(error)}",
                                         size_bytes=len(detected.data), pictures=stale))
        detected.timings["write"] = time.perf_counter() - started
        return FileReport(path=detected.input.url, status=status, output=detected.input.output_url,
                          near_misses=detected.found.near_misses, timings=detected.timings,
                          size_bytes=len(detected.data), projection=detected.found.projection, worker=worker_id(),
                          pictures=actions)

    def _blur(self, detected: _Detected) -> FileReport:
        """Something found: blur, re-encode with the input's metadata, write."""
        timings = detected.timings
        try:
            started = time.perf_counter()
            rendered = anonymize.render_blurred(detected.image, detected.found, detected.data, self.metadata)
            timings["blur_encode"] = time.perf_counter() - started
            started = time.perf_counter()
            storage.write_atomic(detected.input.output_url, rendered.data, root=detected.input.output_root)
            timings["write"] = time.perf_counter() - started
        except Exception as error:  # noqa: BLE001
            raise _Rejected(self._failed(detected.input, f"blur or write failed: {describe(error)}",
                                         detections=detected.found.to_blur, size_bytes=len(detected.data),
                                         timings=timings))
        found = detected.found
        return FileReport(path=detected.input.url, status=Status.BLURRED, output=detected.input.output_url,
                          detections=found.to_blur, near_misses=found.near_misses, timings=timings,
                          size_bytes=len(detected.data), encoding=rendered.encoding, projection=found.projection,
                          worker=worker_id(), pictures=list(rendered.pictures))

    @staticmethod
    def _failed(input_file: InputFile, reason: str, **fields) -> FileReport:
        return FileReport(path=input_file.url, status=Status.FAILED, reason=reason, worker=worker_id(), **fields)


class AnonymizeImages(beam.PTransform):
    """PCollection[InputFile] -> PCollection[FileReport], one report per input.

    Each file is read, detected, then either copied byte for byte (nothing
    found) or blurred and re-encoded with its metadata; both are written
    atomically.
    """

    def __init__(self, config: BlurConfig):
        super().__init__()
        self.config = config

    def expand(self, inputs):
        return inputs | "Anonymize" >> beam.ParDo(AnonymizeFn(self.config))
