"""ReadImages: InputFile -> DecodedInput, or the FileReport that ends it (resumed, skipped, failed)."""

from __future__ import annotations

import time

import apache_beam as beam
import cv2
from apache_beam.metrics import Metrics

from pii_blur import anonymize, imageio, manifest, plan, storage
from pii_blur.config import BlurConfig
from pii_blur.transforms.elements import DecodedInput, Staged
from pii_blur.transforms.reports import NAMESPACE, describe, failed, worker_id
from pii_blur.types import FileReport, InputFile, Status


def previous_report(input_file: InputFile, config: BlurConfig):
    """The report of a previous run that still holds for this input, or None (process it)."""
    fingerprint = config.fingerprint()
    if isinstance(input_file, plan.FinishedInput):   # planned by listing: no read, or one of its record
        return plan.finished_report(input_file, fingerprint)
    if not config.force and not isinstance(input_file, plan.TodoInput):   # not planned
        return manifest.load_current(input_file, fingerprint)
    return None


class ReadFn(beam.DoFn):
    """InputFile -> DecodedInput, or the report that ends the input."""

    def __init__(self, config: BlurConfig):
        self.config = config

    def setup(self):
        cv2.setNumThreads(self.config.threads)   # --workers processes already keep the cores busy

    def process(self, input_file: InputFile):
        if input_file.problem:
            yield failed(input_file, input_file.problem)
            return
        previous = previous_report(input_file, self.config)
        if previous is not None:
            Metrics.counter(NAMESPACE, "resumed").inc()
            yield previous
            return
        yield self._read(input_file)

    def _read(self, input_file: InputFile):
        timings = {}
        if input_file.size is not None and input_file.size > self.config.max_file_bytes:
            return failed(input_file, f"file too large: {input_file.size} bytes (limit {self.config.max_file_bytes})",
                          size_bytes=input_file.size)
        started = time.perf_counter()
        try:
            if storage.is_same_or_inside(input_file.output_url, input_file.url):
                raise ValueError("output path would overwrite the input")
            data = storage.read_bytes(input_file.url)
        except Exception as error:  # noqa: BLE001 - every error becomes a report line
            return failed(input_file, f"read failed: {describe(error)}")
        timings["read"] = time.perf_counter() - started
        if not data:
            return failed(input_file, "empty file (0 bytes)", size_bytes=0)
        if imageio.sniff_format(data[:32]) is None:
            return FileReport(path=input_file.url, status=Status.SKIPPED, size_bytes=len(data),
                              reason="not an image (by content)", worker=worker_id())
        try:
            started = time.perf_counter()
            image = imageio.decode(data, max_pixels=self.config.max_pixels)
            timings["decode"] = time.perf_counter() - started
            projection = anonymize.projection_of(image, data, self.config.projection)
        except Exception as error:  # noqa: BLE001
            return failed(input_file, describe(error), size_bytes=len(data), timings=timings)
        return DecodedInput(input_file, data, image, projection, timings)


class ReadImages(beam.PTransform):
    """PCollection[InputFile] -> PCollection[Staged]: each input read (bytes), sniffed and decoded.

    An input whose previous output still holds comes out as its resumed
    report; one that is not an image by content as `skipped`; one that
    cannot be read or decoded as `failed`, with the reason.
    """

    def __init__(self, config: BlurConfig):
        super().__init__()
        self.config = config

    def expand(self, inputs):
        return inputs | "Read" >> beam.ParDo(ReadFn(self.config)).with_output_types(Staged)
