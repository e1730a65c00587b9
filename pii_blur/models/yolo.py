"""Ultralytics-exported YOLO detectors in ONNX (`onnx-yolo`).

Input: NCHW float RGB in 0..1, the image letterboxed (scaled to fit,
aspect kept, padded with grey 114) to the network size. Output, one of:
  v8 / v11 / v12: [N, 4 + C, A], per anchor (cx, cy, w, h, C class scores);
  v5 / v7:        [N, A, 5 + C], per anchor (cx, cy, w, h, objectness, C class scores),
where boxes are in network-input pixels and A is the number of anchors.
The layout is read from the output shape (and the class count, when the
model's `names` metadata gives it). A detection's score is its best mapped
class's score (times objectness for v5); boxes then go through per-label NMS.

Only model classes mapped to a configured class are decoded: an anchor
whose best class overall is unmapped can still count for a mapped one
(Ultralytics would call it by its best class), which favours recall.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Optional, Sequence

import cv2
import numpy as np

from pii_blur.geometry import nms
from pii_blur.models.base import DeviceError, Detector, DetectorConfig, onnx_session, register
from pii_blur.models.model_config import ModelSpec
from pii_blur.models.model_files import fetch_model
from pii_blur.types import Detection

PAD_VALUE = 114
DEFAULT_INPUT_SIZE = 640
MAX_BATCH = 8
MAX_CANDIDATES = 3000     # best-scoring anchors kept before NMS


class YoloModelError(ValueError):
    """The ONNX file does not look like a YOLO model the config can use."""


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the network input: x_net = x * scale + pad_x."""

    scale: float
    pad_x: int
    pad_y: int

    def to_image(self, boxes_net: np.ndarray, width: int, height: int) -> np.ndarray:
        """Nx4 xyxy boxes from network pixels to image pixels, clipped to the image."""
        boxes = (boxes_net - [self.pad_x, self.pad_y, self.pad_x, self.pad_y]) / self.scale
        return np.clip(boxes, 0, [width, height, width, height])


def letterbox(image_rgb: np.ndarray, net_h: int, net_w: int) -> tuple[np.ndarray, Letterbox]:
    """The image scaled to fit net_h x net_w, aspect kept, centred on grey padding."""
    height, width = image_rgb.shape[:2]
    scale = min(net_h / height, net_w / width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image_rgb, (new_w, new_h), interpolation=interpolation)
    pad_x, pad_y = (net_w - new_w) // 2, (net_h - new_h) // 2
    canvas = np.full((net_h, net_w, 3), PAD_VALUE, np.uint8)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resized
    return canvas, Letterbox(scale, pad_x, pad_y)


def parse_names(text: Optional[str]) -> dict[int, str]:
    """Ultralytics' `names` metadata ("{0: 'person', 1: 'bicycle'}") as a dict; {} if absent."""
    if not text:
        return {}
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {}
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    return {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}


def class_labels(label_map: dict[str, str], names: dict[int, str], classes: Sequence[str]) -> dict[int, str]:
    """Model class id -> label, for the labels in `classes` (all labels if empty).

    label_map keys are class ids ("0") or class names from the model ("person").
    Without a label_map, the model's own names are the labels.

    Raises:
        YoloModelError: a key is neither an id nor a known name, or no class is left.
    """
    by_name = {name: index for index, name in names.items()}
    mapping: dict[int, str] = {}
    if label_map:
        for key, label in label_map.items():
            if key.strip().lstrip("-").isdigit():
                mapping[int(key)] = label
            elif key in by_name:
                mapping[by_name[key]] = label
            else:
                raise YoloModelError(f"labels: {key!r} is neither a class id nor one of the model's class "
                                     f"names {sorted(by_name) or '(the model has no names metadata)'}")
    else:
        if not names:
            raise YoloModelError("the model has no 'names' metadata: give 'labels' (class id -> label) in the "
                                 "model config")
        mapping = dict(names)
    if classes:
        mapping = {index: label for index, label in mapping.items() if label in classes}
    if not mapping:
        raise YoloModelError(f"none of the model's classes maps to {list(classes)}; its classes: "
                             f"{sorted(names.values()) or sorted(label_map.values())}")
    return mapping


def detect_layout(shape: Sequence, num_classes: int, requested: str = "auto") -> str:
    """'v8' ([N, 4+C, A]) or 'v5' ([N, A, 5+C]) for an output shape; C = num_classes (0 if unknown)."""
    if requested != "auto":
        return requested
    if len(shape) != 3:
        raise YoloModelError(f"expected a 3-d YOLO output [N, 4+C, A] or [N, A, 5+C], got shape {list(shape)}")
    rows, cols = shape[1], shape[2]
    if num_classes:
        if rows == 4 + num_classes:
            return "v8"
        if cols == 5 + num_classes:
            return "v5"
    if isinstance(rows, int) and isinstance(cols, int):
        return "v8" if rows < cols else "v5"
    # Symbolic anchor count: it is the dynamic axis.
    return "v8" if isinstance(rows, int) else "v5"


def decode(output: np.ndarray, layout: str, class_ids: np.ndarray, floor: float):
    """Candidates from one image's raw output.

    output: [4+C, A] (v8) or [A, 5+C] (v5). class_ids: the model classes to
    decode. Returns boxes (Kx4 xyxy, network pixels), scores (K), and the
    index into class_ids of each box's class, for scores >= floor.
    """
    rows = output.T if layout == "v8" else output
    first_class = 4 if layout == "v8" else 5
    class_scores = rows[:, first_class + class_ids]
    if layout == "v5":
        class_scores = class_scores * rows[:, 4:5]
    best = np.argmax(class_scores, axis=1)
    scores = class_scores[np.arange(len(rows)), best]
    keep = np.nonzero(scores >= floor)[0]
    if len(keep) > MAX_CANDIDATES:
        keep = keep[np.argsort(-scores[keep])[:MAX_CANDIDATES]]
    cx, cy, w, h = (rows[keep, i].astype(np.float32) for i in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes, scores[keep].astype(np.float32), best[keep]


@register("onnx-yolo", needs_model_file=True)
class YoloDetector(Detector):
    """A user's YOLO ONNX model (see the module docstring), from DetectorConfig.model.

    threshold: MIN_PERCENTAGE_PROBABILITY / 100 (YOLO scores are class confidences).

    Raises (at construction):
        ModelFileError: missing file or wrong sha256.
        YoloModelError: not a usable YOLO model for the configured labels.
    """

    def __init__(self, config: DetectorConfig):
        spec: ModelSpec = config.model
        self.threshold = config.min_probability
        self.iou = spec.iou
        local = fetch_model(spec.path, spec.sha256)
        try:
            self.session = onnx_session(local.path, config.threads)
        except DeviceError:
            raise
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise YoloModelError(f"{spec.path} is not a loadable ONNX model: {error}") from error
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        metadata = self.session.get_modelmeta().custom_metadata_map
        names = parse_names(metadata.get("names"))
        self.net_h, self.net_w = input_size(model_input.shape, spec.input_size, metadata.get("imgsz"))
        self.batch_size = model_input.shape[0] if isinstance(model_input.shape[0], int) else MAX_BATCH
        self.class_labels = class_labels(spec.label_map, names, spec.classes)
        self.class_ids = np.array(sorted(self.class_labels), np.int64)
        self.labels = tuple(dict.fromkeys(self.class_labels[i] for i in self.class_ids))
        self.layout = detect_layout(self.session.get_outputs()[0].shape, len(names), spec.layout)

    def detect(self, images_rgb: Sequence[np.ndarray], rescale: bool = True) -> list[list[Detection]]:
        found = []
        for start in range(0, len(images_rgb), self.batch_size):
            chunk = images_rgb[start:start + self.batch_size]
            fitted = [letterbox(image, self.net_h, self.net_w) for image in chunk]
            blob = np.stack([canvas for canvas, _ in fitted]).transpose(0, 3, 1, 2).astype(self.input_dtype) / 255
            outputs = self.session.run(None, {self.input_name: blob})[0]
            if self.layout == "v8" and outputs.shape[1] < 4 + len(self.class_ids):
                raise YoloModelError(f"YOLO output {list(outputs.shape)} is too small for the mapped classes")
            for image, (_, fit), output in zip(chunk, fitted, outputs):
                found.append(self._detections(output.astype(np.float32), fit, image.shape[1], image.shape[0]))
        return found

    def _detections(self, output: np.ndarray, fit: Letterbox, width: int, height: int) -> list[Detection]:
        boxes, scores, which = decode(output, self.layout, self.class_ids, self.floor)
        labels = np.array([self.class_labels[i] for i in self.class_ids])[which]
        detections = []
        for label in dict.fromkeys(labels):
            mine = np.nonzero(labels == label)[0]
            keep = mine[nms(boxes[mine], scores[mine], self.iou)]
            for box, score in zip(fit.to_image(boxes[keep], width, height), scores[keep]):
                if box[2] > box[0] and box[3] > box[1]:
                    detections.append(Detection(str(label), float(score), tuple(float(v) for v in box)))
        return sorted(detections, key=lambda d: -d.score)


def input_size(shape: Sequence, configured: Optional[tuple[int, int]], imgsz: Optional[str]) -> tuple[int, int]:
    """Network (height, width): the model's fixed shape, else the config's, else `imgsz` metadata, else 640."""
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int) and shape[2] > 0:
        if configured and tuple(configured) != (shape[2], shape[3]):
            raise YoloModelError(f"input_size {list(configured)} differs from the model's fixed input "
                                 f"{[shape[2], shape[3]]}")
        return shape[2], shape[3]
    if configured:
        return configured
    return _parse_imgsz(imgsz) or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)


def _parse_imgsz(text: Optional[str]) -> Optional[tuple[int, int]]:
    try:
        value = ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None
