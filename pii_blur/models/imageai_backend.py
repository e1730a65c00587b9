"""ImageAI 3.x object detection (`imageai`): the original tool's engine.

ImageAI's ObjectDetection runs RetinaNet (torchvision's
retinanet_resnet50_fpn, 91 COCO ids), YOLOv3 or TinyYOLOv3 (80 COCO classes)
from .pt/.pth weights, and names its detections with COCO names ("person",
"car", "truck", ...). The model config's `labels` may rename them
({"truck": "car"}); without it the COCO names are the labels.

ImageAI drops every detection scoring under its internal objectness score
(0.5), which would hide near misses and make MIN_PERCENTAGE_PROBABILITY
under 50 useless, so it is lowered to this detector's floor. RetinaNet input
is handed over as a lossless PNG in a temporary folder (given an array,
ImageAI would write a JPEG into its own package folder).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from typing import Sequence

import cv2
import numpy as np

from pii_blur.models.base import DeviceError, Detector, DetectorConfig, register
from pii_blur.models.model_config import IMAGEAI_MODEL_TYPES, ModelSpec
from pii_blur.models.model_files import ModelFileError, fetch_model
from pii_blur.types import Detection

LOG = logging.getLogger(__name__)
# ObjectDetection's private score threshold (name-mangled attribute).
_OBJECTNESS_ATTRIBUTE = "_ObjectDetection__objectness_score"


def import_imageai():
    """ImageAI's ObjectDetection class and torch, or a clear error naming the extra."""
    try:
        import torch
        from imageai.Detection import ObjectDetection
    except ImportError as error:
        raise ImportError("the imageai backend needs ImageAI 3 and PyTorch: pip install 'pii-blur[imageai]'") \
            from error
    return ObjectDetection, torch


def model_type_of(spec: ModelSpec) -> str:
    """The configured model_type, else a guess from the file name (tiny-yolov3.pt, yolov3.pt, retinanet_*.pth).

    Raises:
        ModelFileError: the name says nothing.
    """
    if spec.model_type:
        return spec.model_type
    name = os.path.basename(spec.path).lower()
    if "yolo" in name:
        return "tiny-yolov3" if "tiny" in name else "yolov3"
    if "retina" in name:
        return "retinanet"
    raise ModelFileError(f"cannot tell the ImageAI network from the file name {name!r}: set model_type to one "
                         f"of {list(IMAGEAI_MODEL_TYPES)} in the model config")


@register("imageai", needs_model_file=True)
class ImageAIDetector(Detector):
    """ImageAI ObjectDetection with the weights of DetectorConfig.model.

    threshold: MIN_PERCENTAGE_PROBABILITY / 100.

    Raises (at construction):
        ImportError: ImageAI or torch is not installed.
        ModelFileError: missing file, wrong sha256, or weights that do not fit the network.
        DeviceError: --device cuda without CUDA in torch.
    """

    def __init__(self, config: DetectorConfig):
        ObjectDetection, torch = import_imageai()
        spec: ModelSpec = config.model
        self.threshold = config.min_probability
        self.model_type = model_type_of(spec)
        label_map = spec.label_map
        self.rename = {name: label for name, label in label_map.items()}
        self.keep = set(spec.classes) if spec.classes else None
        self.labels = tuple(spec.classes) if spec.classes else tuple(dict.fromkeys(label_map.values()))
        if config.device == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"--device cuda: torch {torch.__version__} has no CUDA device")
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        local = fetch_model(spec.path, spec.sha256)
        detector = ObjectDetection()
        if config.device == "cpu":
            detector.useCPU()
        {"retinanet": detector.setModelTypeAsRetinaNet, "yolov3": detector.setModelTypeAsYOLOv3,
         "tiny-yolov3": detector.setModelTypeAsTinyYOLOv3}[self.model_type]()
        try:
            detector.setModelPath(local.path)
            with warnings.catch_warnings():   # ImageAI builds RetinaNet with torchvision's deprecated arguments
                warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
                detector.loadModel()
        except (RuntimeError, ValueError, OSError) as error:
            raise ModelFileError(f"ImageAI cannot load {spec.path} as {self.model_type} weights: {error}") from error
        if hasattr(detector, _OBJECTNESS_ATTRIBUTE):
            setattr(detector, _OBJECTNESS_ATTRIBUTE, self.floor)
        else:
            LOG.warning("this ImageAI version hides detections under its own score threshold; near misses "
                        "and MIN_PERCENTAGE_PROBABILITY under 50 may not work")
        self.detector = detector

    def detect(self, images_rgb: Sequence[np.ndarray], rescale: bool = True) -> list[list[Detection]]:
        """One image at a time: ImageAI's API takes single images."""
        return [self._detect_one(image) for image in images_rgb]

    def _detect_one(self, image_rgb: np.ndarray) -> list[Detection]:
        height, width = image_rgb.shape[:2]
        image_bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
        percent = 100 * self.floor
        if self.model_type == "retinanet":
            with tempfile.TemporaryDirectory(prefix="pii-blur-imageai-") as folder:
                path = os.path.join(folder, "view.png")
                cv2.imwrite(path, image_bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                _, predictions = self.detector.detectObjectsFromImage(
                    input_image=path, output_type="array", minimum_percentage_probability=percent)
        else:
            _, predictions = self.detector.detectObjectsFromImage(
                input_image=image_bgr, output_type="array", minimum_percentage_probability=percent)
        detections = []
        for prediction in predictions:
            label = self.rename.get(prediction["name"], prediction["name"])
            if self.keep is not None and label not in self.keep:
                continue
            x1, y1, x2, y2 = (float(v) for v in prediction["box_points"])
            box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
            if box[2] > box[0] and box[3] > box[1]:
                detections.append(Detection(label, prediction["percentage_probability"] / 100, box))
        return detections
