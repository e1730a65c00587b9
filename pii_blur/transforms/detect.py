"""ProjectViews, DetectPII and MergeDetections: from a decoded image to what is in it.

DetectPII runs each detector through Beam's RunInference with the
project's ModelHandler: the model loads once per worker process (or once
per machine, for a GPU), and its failures come out as dead letters.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
import cv2


@contextlib.contextmanager
def _without_beams_model_manager():
    """Import RunInference as Beam does where torch is not installed.

    Beam's inference module imports its ModelManager (GPU memory juggling for
    many models, unused here), and with it torch and scipy whenever torch is
    installed, as the ImageAI backend needs: 1.5 s more start-up in every
    worker process. A None in sys.modules makes that optional import fail
    fast, the way Beam handles a missing torch.
    """
    name = "apache_beam.ml.inference.model_manager"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None
    try:
        yield
    finally:
        if sys.modules.get(name, False) is None:
            del sys.modules[name]


with _without_beams_model_manager():
    from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from pii_blur import anonymize
from pii_blur.config import BlurConfig
from pii_blur.models.base import Detector, DetectorConfig, create_detector
from pii_blur.transforms.elements import DecodedInput, DetectedInput, Staged, ViewedInput
from pii_blur.transforms.reports import describe, failed
from pii_blur.types import FileReport


def project_views(element):
    if isinstance(element, FileReport):
        return element
    started = time.perf_counter()
    try:
        views = anonymize.project(element.image, element.projection)
    except Exception as error:  # noqa: BLE001 - every error becomes a report line
        return failed(element.input, f"projection failed: {describe(error)}", size_bytes=len(element.data),
                      timings=element.timings)
    element.timings["detect"] = time.perf_counter() - started
    return ViewedInput(element, views)


class ProjectViews(beam.PTransform):
    """PCollection[Staged] -> PCollection[Staged]: each DecodedInput with the views to search.

    A photo is one upright view; a panorama is its views of the sphere
    (anonymize.project). Reports pass through.
    """

    def expand(self, staged):
        return staged | "Project" >> beam.Map(project_views).with_output_types(Staged)


# RunInference's keyed elements (the key is a constant; see _keyed).
KEYED = beam.typehints.Tuple[int, Staged]


class ViewsModelHandler(ModelHandler[Staged, Staged, Detector]):
    """RunInference's hooks for a registered detector, one image's views per example.

    Each result is the example with what this detector found, or its
    `failed` report where detection failed for that image alone.
    backend: registered detector name; config: its DetectorConfig.
    share_across_processes: one model per machine (Beam serves it from a
    separate process), for a single GPU.
    """

    def __init__(self, backend: str, config: DetectorConfig, threads: int, *, share_across_processes: bool = False):
        super().__init__()
        self.backend = backend
        self.config = config
        self.threads = threads
        self._share = share_across_processes

    def load_model(self) -> Detector:
        cv2.setNumThreads(self.threads)   # --workers processes already keep the cores busy
        detector = create_detector(self.backend, self.config)
        # Beam, the models and their libraries leave millions of long-lived
        # objects; frozen, they are skipped by every later collection and by
        # the one at exit (0.7 s per worker at the end of a local run).
        gc.freeze()
        return detector

    def run_inference(self, batch: Sequence[Staged], model: Detector,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[Staged]:
        """Each ViewedInput with (threshold, detections per view) appended to its found_by, or the
        `failed` report of an image whose detection raised; reports pass through. (KeyedModelHandler
        takes any result, so the elements stay Staged and StagedCoder sizes them.)"""
        results = []
        for viewed in batch:
            if isinstance(viewed, FileReport):   # an input that an earlier step ended passes through
                results.append(viewed)
                continue
            decoded = viewed.decoded
            started = time.perf_counter()
            try:
                viewed.found_by.append((model.threshold, anonymize.detect_views(model, viewed.views)))
                result = viewed
            except Exception as error:  # noqa: BLE001 - one image's failure is its own report line
                result = failed(decoded.input, f"detection failed: {describe(error)}", size_bytes=len(decoded.data),
                                timings=decoded.timings)
            decoded.timings["detect"] = decoded.timings.get("detect", 0.0) + time.perf_counter() - started
            results.append(result)
        return results

    def get_num_bytes(self, batch: Sequence[ViewedInput]) -> int:
        return sum(viewed.views.nbytes for viewed in batch if isinstance(viewed, ViewedInput))

    def get_metrics_namespace(self) -> str:
        return f"pii_blur_{self.backend}"

    def batch_elements_kwargs(self) -> dict[str, Any]:
        # One image per batch: a panorama's views are already many same-size
        # images, and batching panoramas would multiply the memory held.
        return {"min_batch_size": 1, "max_batch_size": 1}

    def share_model_across_processes(self) -> bool:
        return self._share


def _unkeyed(keyed: tuple[int, Staged]) -> Staged:
    return keyed[1]


def _dead_letters(dead_letter) -> Iterable[FileReport]:
    """A `failed` report for every image of a batch that RunInference could not run
    (dead_letter: (batch of (key, ViewedInput), (exception type, message, traceback)))."""
    batch, (_error_type, error_repr, _traceback) = dead_letter
    for _key, viewed in batch:
        yield failed(viewed.decoded.input, f"detection failed: {error_repr}", size_bytes=len(viewed.decoded.data))


def _keyed(viewed: Staged) -> tuple[int, Staged]:
    """RunInference's keyed form. The key is not used (the example carries its input), and a
    URL would not do: a file name that is not UTF-8 cannot pass Beam's string coder."""
    return 0, viewed


class DetectPII(beam.PTransform):
    """PCollection[Staged] -> PCollection[Staged]: every detector of the run over each image's views.

    One RunInference per backend (config.backends()), each with
    .with_exception_handling(), so a batch that raises ends as `failed`
    reports; a failure of one image alone is caught for that image.
    Reports pass through the models untouched. share_across_processes: one
    model per machine (for a GPU).

    With separate_failures, the output is (images and reports, failed
    reports of batches that raised): the first stays fused with the steps
    around it, where joining the two would make Beam's local runner encode
    every panorama's views at the join.
    """

    def __init__(self, config: BlurConfig, share_across_processes: bool = False, separate_failures: bool = False):
        super().__init__()
        self.config = config
        self.share_across_processes = share_across_processes
        self.separate_failures = separate_failures

    def expand(self, staged):
        current, failures = staged, []
        for backend in self.config.backends():
            handler = ViewsModelHandler(backend, self.config.detector_config(), self.config.threads,
                                        share_across_processes=self.share_across_processes)
            inference = RunInference(KeyedModelHandler(handler)).with_exception_handling()
            keyed = current | f"Keyed {backend}" >> beam.Map(_keyed).with_output_types(KEYED)
            results, dead = keyed | f"Detect {backend}" >> inference
            # RunInference declares no output type, so Beam would size its sampled
            # elements by pickling them whole (a panorama and its views, 100 MB).
            results.element_type = KEYED
            failures.append(dead.failed_inferences
                            | f"Dead letters {backend}" >> beam.FlatMap(_dead_letters).with_output_types(FileReport))
            current = results | f"Found by {backend}" >> beam.Map(_unkeyed).with_output_types(Staged)
        failed = failures | "Failed" >> beam.Flatten().with_output_types(FileReport)
        if self.separate_failures:
            return current, failed
        return (current, failed) | "Flatten" >> beam.Flatten().with_output_types(Staged)


def merge_detections(element, labels: frozenset):
    if not isinstance(element, ViewedInput):
        return element
    decoded: DecodedInput = element.decoded
    started = time.perf_counter()
    try:
        found = anonymize.merge(decoded.image, element.views, element.found_by, set(labels))
    except Exception as error:  # noqa: BLE001
        return failed(decoded.input, f"merging detections failed: {describe(error)}", size_bytes=len(decoded.data),
                      timings=decoded.timings)
    decoded.timings["detect"] = decoded.timings.get("detect", 0.0) + time.perf_counter() - started
    return DetectedInput(decoded, found)


class MergeDetections(beam.PTransform):
    """PCollection[Staged] -> PCollection[Staged]: each image's detections per view as one
    DetectedInput (merged on the sphere for panoramas; anonymize.merge). Reports pass through."""

    def __init__(self, classes: Sequence[str]):
        super().__init__()
        self.labels = frozenset(classes)

    def expand(self, staged):
        return staged | "Merge" >> beam.Map(merge_detections, labels=self.labels).with_output_types(Staged)
