"""Any registered Detector behind Beam's RunInference.

`DetectorModelHandler` adapts a detector to Beam's ModelHandler: the model is
loaded once per process by RunInference's DoFn (in setup(), through
shared.Shared), or once per machine with share_across_processes=True (for a
GPU); each batch from BatchElements is split into groups of images of one
size, which go to the detector together.

`DetectImages` is the keyed form the pipeline uses: (key, image) in,
(key, detections) out, and every element of a batch whose inference failed
comes out as a `failed` FileReport (a dead letter), never as an image with
no detections.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from pii_blur.models.base import Detector, DetectorConfig, create_detector
from pii_blur.types import Detection, FileReport, Status

LOG = logging.getLogger(__name__)
NAMESPACE = "pii_blur"


def group_by_size(images: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of `images` grouped by shape, groups in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(image.shape, []).append(index)
    return list(groups.values())


class DetectorModelHandler(ModelHandler[np.ndarray, list[Detection], Detector]):
    """RunInference's hooks for a registered detector.

    backend: registered detector name; config: its DetectorConfig (models included).
    min_batch_size, max_batch_size: BatchElements bounds (images per batch).
    share_across_processes: one model per machine instead of per process
        (Beam serves it from a separate process; for a single GPU).
    """

    def __init__(self, backend: str, config: DetectorConfig, *, min_batch_size: int = 1,
                 max_batch_size: int = 8, share_across_processes: bool = False):
        super().__init__()
        self.backend = backend
        self.config = config
        self._batching = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
        self._share = share_across_processes

    def load_model(self) -> Detector:
        return create_detector(self.backend, self.config)

    def run_inference(self, batch: Sequence[np.ndarray], model: Detector,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[list[Detection]]:
        """Detections per image, in batch order; same-size images go to the model together."""
        results: list[list[Detection]] = [[] for _ in batch]
        for indices in group_by_size(batch):
            for index, detections in zip(indices, model.detect([batch[i] for i in indices])):
                results[index] = detections
        return results

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(image.nbytes for image in batch)

    def get_metrics_namespace(self) -> str:
        return f"{NAMESPACE}_{self.backend}"

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return dict(self._batching)

    def share_model_across_processes(self) -> bool:
        return self._share


def failed_reports(dead_letter) -> Iterable[FileReport]:
    """FileReports (failed) for every key of a batch that RunInference could not process.

    dead_letter: (batch of (key, image), (exception type, message, traceback)),
    as RunInference(...).with_exception_handling() outputs.
    """
    batch, (_error_type, error_repr, _traceback) = dead_letter
    reason = f"detection failed: {error_repr}"
    for key, _image in batch:
        yield FileReport(path=str(key), status=Status.FAILED, reason=reason)


class DetectImages(beam.PTransform):
    """PCollection[(key, HxWx3 uint8 RGB)] -> (PCollection[(key, list[Detection])], PCollection[FileReport]).

    The second output holds one `failed` report per key whose batch raised.
    """

    def __init__(self, handler: DetectorModelHandler):
        super().__init__()
        self.handler = handler

    def expand(self, keyed_images):
        results, dead = (keyed_images
                         | "RunInference" >> RunInference(KeyedModelHandler(self.handler)).with_exception_handling())
        failed = dead.failed_inferences | "DeadLetters" >> beam.FlatMap(failed_reports)
        return results, failed
