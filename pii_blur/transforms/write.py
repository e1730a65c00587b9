"""The branch after detection: untouched images are copied, the others blurred and written.

RouteImages splits DetectedInputs into `untouched` (nothing to blur),
`found` (something to blur) and `done` (reports that ended an input
earlier). CopyUntouched writes the input's own bytes (or, where its embedded
pictures are stale, the input without them); BlurImages covers what was
found; WriteImages encodes with the input's allowed metadata (JPEGs block
by block) and writes atomically. Each output's manifest record is written
right after it, for resuming.
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
import cv2

from pii_blur import anonymize, manifest, storage
from pii_blur.config import BlurConfig
from pii_blur.metadata import MetadataWriter
from pii_blur.transforms.elements import BlurredInput, DetectedInput, Staged
from pii_blur.transforms.reports import describe, failed, worker_id
from pii_blur.types import FileReport, InputFile, Status

LOG = logging.getLogger(__name__)
UNTOUCHED, FOUND, DONE = "untouched", "found", "done"


def route_of(element) -> str:
    if isinstance(element, FileReport):
        return DONE
    return FOUND if element.found.to_blur else UNTOUCHED


class _RouteFn(beam.DoFn):
    def process(self, element):
        route = route_of(element)
        yield element if route == FOUND else beam.pvalue.TaggedOutput(route, element)


class RouteImages(beam.PTransform):
    """PCollection[Staged] -> {untouched, found: PCollection[DetectedInput], done: PCollection[FileReport]},
    as tagged outputs."""

    def expand(self, staged):
        # Typed, so that Beam sizes sampled images with StagedCoder rather than by pickling them.
        route = beam.ParDo(_RouteFn()).with_output_types(Staged, **{UNTOUCHED: Staged, DONE: FileReport})
        routes = staged | "Route" >> route.with_outputs(UNTOUCHED, DONE, main=FOUND)
        return {UNTOUCHED: routes[UNTOUCHED], FOUND: routes[FOUND], DONE: routes[DONE]}


def record(input_file: InputFile, report: FileReport, config: BlurConfig) -> FileReport:
    """Write the manifest record of a finished output (after the output itself)."""
    try:
        manifest.record_finished(input_file, report, config.fingerprint())
        manifest.remove_records(getattr(input_file, "stale_records", ()))
    except Exception as error:  # noqa: BLE001 - losing the record only costs the resume
        LOG.warning("could not record %s for resuming: %s", input_file.url, describe(error))
    return report


class _WithMetadataWriter(beam.DoFn):
    """A DoFn with one long-lived exiftool process."""

    def __init__(self, config: BlurConfig):
        self.config = config
        self.metadata = None

    def setup(self):
        cv2.setNumThreads(self.config.threads)
        self.metadata = MetadataWriter()

    def teardown(self):
        if self.metadata is not None:
            self.metadata.close()


class CopyFn(_WithMetadataWriter):
    def process(self, detected: DetectedInput):
        decoded = detected.decoded
        started = time.perf_counter()
        stale = anonymize.stale_pictures(decoded.image, decoded.data)
        status, data, actions = Status.COPIED, decoded.data, []
        try:
            if stale:
                rendered = anonymize.render_cleaned(decoded.image, decoded.data, self.metadata)
                status, data = Status.CLEANED, rendered.data
                actions = [f"stale: {description}" for description in stale] + list(rendered.pictures)
            storage.write_atomic(decoded.input.output_url, data, root=decoded.input.output_root)
        except Exception as error:  # noqa: BLE001
            yield failed(decoded.input, f"clean or write failed: {describe(error)}", size_bytes=len(decoded.data),
                         pictures=stale)
            return
        decoded.timings["write"] = time.perf_counter() - started
        report = FileReport(path=decoded.input.url, status=status, output=decoded.input.output_url,
                            near_misses=detected.found.near_misses, timings=decoded.timings,
                            size_bytes=len(decoded.data), projection=detected.found.projection, worker=worker_id(),
                            pictures=actions)
        yield record(decoded.input, report, self.config)


class CopyUntouched(beam.PTransform):
    """PCollection[DetectedInput] (nothing to blur) -> PCollection[FileReport]: a byte copy
    of each input (`copied`), or, where its embedded pictures do not show its
    pixels, the input without them (`cleaned`)."""

    def __init__(self, config: BlurConfig):
        super().__init__()
        self.config = config

    def expand(self, untouched):
        return untouched | "Copy" >> beam.ParDo(CopyFn(self.config)).with_output_types(FileReport)


def blur_element(detected: DetectedInput, mode: str):
    decoded = detected.decoded
    started = time.perf_counter()
    try:
        pixels = anonymize.blur(decoded.image, detected.found, mode)
    except Exception as error:  # noqa: BLE001
        return failed(decoded.input, f"blur failed: {describe(error)}", detections=detected.found.to_blur,
                      size_bytes=len(decoded.data), timings=decoded.timings)
    decoded.timings["blur_encode"] = time.perf_counter() - started
    return BlurredInput(detected, pixels)


class BlurImages(beam.PTransform):
    """PCollection[DetectedInput] -> PCollection[Staged]: each with its pixels covered
    (--mode blur, pixelate or fill), or a `failed` report."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def expand(self, found):
        return found | "Blur" >> beam.Map(blur_element, mode=self.mode).with_output_types(Staged)


class WriteFn(_WithMetadataWriter):
    def process(self, element):
        if isinstance(element, FileReport):
            yield element
            return
        detected, decoded = element.detected, element.detected.decoded
        timings = decoded.timings
        try:
            started = time.perf_counter()
            rendered = anonymize.render(decoded.image, element.pixels, decoded.data, self.metadata)
            timings["blur_encode"] = timings.get("blur_encode", 0.0) + time.perf_counter() - started
            started = time.perf_counter()
            storage.write_atomic(decoded.input.output_url, rendered.data, root=decoded.input.output_root)
            timings["write"] = time.perf_counter() - started
        except Exception as error:  # noqa: BLE001
            yield failed(decoded.input, f"blur or write failed: {describe(error)}",
                         detections=detected.found.to_blur, size_bytes=len(decoded.data), timings=timings)
            return
        found = detected.found
        report = FileReport(path=decoded.input.url, status=Status.BLURRED, output=decoded.input.output_url,
                            detections=found.to_blur, near_misses=found.near_misses, timings=timings,
                            size_bytes=len(decoded.data), encoding=rendered.encoding, projection=found.projection,
                            worker=worker_id(), pictures=list(rendered.pictures))
        yield record(decoded.input, report, self.config)


class WriteImages(beam.PTransform):
    """PCollection[Staged] (BlurredInputs) -> PCollection[FileReport]: each encoded in its
    input's format with the input's allowed metadata, written atomically (`blurred`)."""

    def __init__(self, config: BlurConfig):
        super().__init__()
        self.config = config

    def expand(self, blurred):
        return blurred | "Write" >> beam.ParDo(WriteFn(self.config)).with_output_types(FileReport)
