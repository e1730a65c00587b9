"""TF2 SavedModels with the Object Detection API signature (`tensorflow`).

This covers the TF2 Detection Zoo (SSD, EfficientDet, Faster R-CNN, CenterNet)
and the Open Images detectors, whose classes include "Human face" and
"Vehicle registration plate". The signature takes uint8 RGB images
[N, H, W, 3] (most exports accept N = 1 only) and returns, per image:
  detection_boxes   [N, K, 4]  (ymin, xmin, ymax, xmax), 0..1 of the image size;
  detection_scores  [N, K];
  detection_classes [N, K]     class ids as floats (label-map ids, 1-based for COCO);
  num_detections    [N].
Detections are already non-max suppressed by the model. The model config's
`labels` maps class ids to labels, e.g. {"1": person, "3": car, "8": truck}
for COCO.

Beam's TFModelHandlerTensor is not used: it stacks equal-shape tensors and
returns raw outputs, whereas detection needs this post-processing; the
ViewsModelHandler in transforms/detect.py runs any detector over an image's views.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Sequence

import numpy as np

from pii_blur.models.base import DeviceError, Detector, DetectorConfig, register
from pii_blur.models.model_config import ModelSpec
from pii_blur.models.model_files import ModelFileError, fetch_model, find_saved_model
from pii_blur.types import Detection

LOG = logging.getLogger(__name__)
OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes")


class TFModelError(ValueError):
    """The SavedModel lacks the Object Detection API signature, or the labels do not fit."""


def import_tensorflow():
    """TensorFlow, or a clear error naming the extra to install."""
    if importlib.util.find_spec("triton") is not None and "tensorflow" not in sys.modules:
        # torch's triton (installed with pii-blur[imageai]) crashes the process with a segmentation
        # fault when its native library loads after TensorFlow's; loaded first, both work.
        import triton  # noqa: F401
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError("the tensorflow backend needs TensorFlow: pip install 'pii-blur[tensorflow]'") from error
    return tf


def class_labels(label_map: dict[str, str], classes: Sequence[str]) -> dict[int, str]:
    """Class id -> label for the labels in `classes` (all if empty).

    Raises:
        TFModelError: no labels, a key that is not an integer id, or none left.
    """
    if not label_map:
        raise TFModelError("the tensorflow backend needs 'labels' (class id -> label) in the model config, "
                           "e.g. {\"1\": \"person\", \"3\": \"car\"} for COCO")
    mapping = {}
    for key, label in label_map.items():
        try:
            mapping[int(key)] = label
        except ValueError:
            raise TFModelError(f"labels: {key!r} is not an integer class id") from None
    mapping = {index: label for index, label in mapping.items() if not classes or label in classes}
    if not mapping:
        raise TFModelError(f"no class id in 'labels' maps to {list(classes)}")
    return mapping


@register("tensorflow", needs_model_file=True)
class TFObjectDetector(Detector):
    """A SavedModel (folder or .tar.gz/.zip archive) from DetectorConfig.model.

    threshold: MIN_PERCENTAGE_PROBABILITY / 100.

    Raises (at construction):
        ImportError: TensorFlow is not installed.
        ModelFileError, TFModelError: missing or unusable model.
        DeviceError: --device cuda without a GPU visible to TensorFlow.
    """

    def __init__(self, config: DetectorConfig):
        tf = import_tensorflow()
        spec: ModelSpec = config.model
        self.threshold = config.min_probability
        self.class_labels = class_labels(spec.label_map, spec.classes)
        self.labels = tuple(dict.fromkeys(self.class_labels.values()))
        _set_threads(tf, config.threads)
        if config.device == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise DeviceError(f"--device cuda: TensorFlow {tf.__version__} sees no GPU (devices: "
                              f"{[d.name for d in tf.config.list_physical_devices()]}); install a CUDA build "
                              "of tensorflow")
        self.device = "/GPU:0" if config.device == "cuda" else "/CPU:0"
        folder = find_saved_model(fetch_model(spec.path, spec.sha256).path)
        try:
            with tf.device(self.device):
                self.model = tf.saved_model.load(folder)
        except Exception as error:  # noqa: BLE001 - TF raises many untyped errors for bad models
            raise ModelFileError(f"cannot load SavedModel {spec.path}: {type(error).__name__}: {error}") from error
        if spec.signature not in self.model.signatures:
            raise TFModelError(f"SavedModel {spec.path} has no signature {spec.signature!r}; it has "
                               f"{sorted(self.model.signatures)}")
        self.function = self.model.signatures[spec.signature]
        inputs = self.function.structured_input_signature[1]
        if len(inputs) != 1:
            raise TFModelError(f"expected one image input, the signature has {sorted(inputs)}")
        [(self.input_name, input_spec)] = inputs.items()
        self.input_dtype = input_spec.dtype
        self.batch_size = input_spec.shape[0] if input_spec.shape.rank and input_spec.shape[0] else None
        missing = [name for name in OUTPUTS if name not in self.function.structured_outputs]
        if missing:
            raise TFModelError(f"SavedModel {spec.path} lacks the Object Detection API output(s) {missing}; "
                               f"it has {sorted(self.function.structured_outputs)}")
        self._tf = tf

    def detect(self, images_rgb: Sequence[np.ndarray], rescale: bool = True) -> list[list[Detection]]:
        """Same-size images go through together when the signature allows batches."""
        found: list[list[Detection]] = [[] for _ in images_rgb]
        groups: dict[tuple, list[int]] = {}
        for index, image in enumerate(images_rgb):
            groups.setdefault(image.shape, []).append(index)
        for indices in groups.values():
            step = self.batch_size or len(indices)
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                for index, detections in zip(chunk, self._run([images_rgb[i] for i in chunk])):
                    found[index] = detections
        return found

    def _run(self, images: list[np.ndarray]) -> list[list[Detection]]:
        tf = self._tf
        batch = tf.cast(tf.constant(np.stack(images)), self.input_dtype)
        with tf.device(self.device):
            outputs = self.function(**{self.input_name: batch})
        boxes = outputs["detection_boxes"].numpy()
        scores = outputs["detection_scores"].numpy()
        classes = outputs["detection_classes"].numpy()
        counts = outputs["num_detections"].numpy() if "num_detections" in outputs else None
        found = []
        for index, image in enumerate(images):
            height, width = image.shape[:2]
            count = int(counts[index]) if counts is not None else len(scores[index])
            detections = []
            for box, score, class_id in zip(boxes[index, :count], scores[index, :count], classes[index, :count]):
                label = self.class_labels.get(int(round(float(class_id))))
                if label is None or score < self.floor:
                    continue
                ymin, xmin, ymax, xmax = np.clip(box, 0.0, 1.0)
                if xmax > xmin and ymax > ymin:
                    detections.append(Detection(label, float(score), (float(xmin * width), float(ymin * height),
                                                                      float(xmax * width), float(ymax * height))))
            found.append(detections)
        return found


def _set_threads(tf, threads: int) -> None:
    """TF's thread pools can be sized only before its runtime starts; later calls keep the first size."""
    if threads <= 0:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        LOG.debug("TensorFlow already initialised; keeping its thread pools")
