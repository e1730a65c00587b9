"""Licence plates via PP-OCRv4 text detection (ONNX, vendored from rapidocr-onnxruntime 1.4.4).

PP-OCR's DB text detector outputs a per-pixel text probability map; text
regions are its connected blobs, each grown by an "unclip" margin because the
network is trained on shrunk text polygons. It finds plate characters very
reliably, and all other text too, so boxes go through a plate-shape filter
and are padded from the characters out to the plate's border.

Input NCHW float32 BGR, (x / 255 - 0.5) / 0.5, H and W multiples of 32.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from pii_blur.geometry import nms
from pii_blur.models.base import Detector, DetectorConfig, onnx_session, register, round_up
from pii_blur.models.weights import read_vendored
from pii_blur.types import Detection

PIXEL_THRESHOLD = 0.3      # text probability for a pixel to join a blob
UNCLIP_RATIO = 1.6         # DB's shrink ratio in training
MIN_SHORT_SIDE = 736       # upscale so the short side is at least this (PP-OCR's own default)
MAX_LONG_SIDE = 6144       # never run on more than this many pixels along the long side
MAX_CANDIDATES = 1000
# Plate shape: a line of 4-10 characters, or a two-line plate. Text-line
# height in image pixels must be enough to carry readable characters.
MIN_ASPECT, MAX_ASPECT = 1.0, 8.0
MIN_TEXT_HEIGHT = 6.0
# From the characters' box out to the plate's border, per side, as a
# fraction of the text box's width and height.
PAD_X, PAD_Y = 0.12, 0.35


def threshold_for(min_probability: float) -> float:
    """Mean blob probability needed, for MIN_PERCENTAGE_PROBABILITY / 100.

    PP-OCR's own default box threshold is 0.5; the recommended 40 maps to 0.5,
    and the range 1..100 maps linearly onto 0.35..0.725.
    """
    return 0.35 + 0.375 * min_probability


@register("onnx-ppocr-plate")
class PlateDetector(Detector):
    labels = ("plate",)

    def __init__(self, config: DetectorConfig):
        self.threshold = threshold_for(config.min_probability)
        self.session = onnx_session(read_vendored("ppocrv4_det.onnx"), config.threads)
        self.input_name = self.session.get_inputs()[0].name

    def detect(self, images_rgb: Sequence[np.ndarray]) -> list[list[Detection]]:
        return [self._detect_one(image) for image in images_rgb]

    def _detect_one(self, image_rgb: np.ndarray) -> list[Detection]:
        height, width = image_rgb.shape[:2]
        scale = max(1.0, MIN_SHORT_SIDE / min(height, width))
        scale = min(scale, MAX_LONG_SIDE / max(height, width))
        net_w, net_h = round_up(width * scale, 32), round_up(height * scale, 32)
        resized = cv2.resize(image_rgb[:, :, ::-1], (net_w, net_h), interpolation=cv2.INTER_LINEAR)
        blob = ((resized.astype(np.float32) / 127.5) - 1.0).transpose(2, 0, 1)[None]
        probability = self.session.run(None, {self.input_name: blob})[0][0, 0]
        rects = text_regions(probability, self.threshold)
        detections = []
        factor = np.array([width / net_w, height / net_h], dtype=np.float32)
        boxes, scores = [], []
        for (centre, size, angle), score in rects:
            if not looks_like_plate(size, factor):
                continue
            corners = cv2.boxPoints((centre, size, angle)) * factor
            x1, y1 = corners.min(axis=0)
            x2, y2 = corners.max(axis=0)
            pad_x, pad_y = (x2 - x1) * PAD_X, (y2 - y1) * PAD_Y
            boxes.append([max(x1 - pad_x, 0), max(y1 - pad_y, 0), min(x2 + pad_x, width), min(y2 + pad_y, height)])
            scores.append(score)
        if boxes:
            boxes_array, scores_array = np.array(boxes, np.float32), np.array(scores, np.float32)
            for index in nms(boxes_array, scores_array, 0.5):
                detections.append(Detection("plate", float(scores_array[index]),
                                            tuple(float(v) for v in boxes_array[index])))
        return detections


def looks_like_plate(size, factor) -> bool:
    """Rotated text box `size` (w, h, network pixels) has a plate's shape in image pixels."""
    long_side, short_side = max(size), min(size)
    text_height = short_side * float(factor.mean())
    return text_height >= MIN_TEXT_HEIGHT and MIN_ASPECT <= long_side / max(short_side, 1e-6) <= MAX_ASPECT


def text_regions(probability: np.ndarray, box_threshold: float):
    """Rotated rectangles ((cx, cy), (w, h), angle) of text blobs, with mean probability.

    probability: HxW text probability map from the network.
    """
    bitmap = (probability > PIXEL_THRESHOLD).astype(np.uint8)
    bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    regions = []
    for contour in contours[:MAX_CANDIDATES]:
        centre, (w, h), angle = cv2.minAreaRect(contour)
        if min(w, h) < 3:
            continue
        score = mean_inside(probability, contour)
        if score < box_threshold:
            continue
        grow = (w * h) * UNCLIP_RATIO / (2 * (w + h))
        w, h = w + 2 * grow, h + 2 * grow
        if min(w, h) < 5:
            continue
        regions.append(((centre, (w, h), angle), score))
    return regions


def mean_inside(probability: np.ndarray, contour: np.ndarray) -> float:
    """Mean of `probability` inside a contour (Kx1x2 int points)."""
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [contour - np.array([x, y])], 1)
    return float(cv2.mean(probability[y:y + h, x:x + w], mask)[0])
