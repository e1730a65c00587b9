"""Licence plates via PP-OCRv4 text detection and recognition (ONNX, from
rapidocr-onnxruntime 1.4.4; the detector's element-wise passes folded by
tools/derive_ppocr_det.py).

PP-OCR's DB text detector outputs a per-pixel text probability map; text
regions are its connected blobs, each grown by an "unclip" margin because the
network is trained on shrunk text polygons. It finds plate characters very
reliably, and all other text too, and at high resolution also grass and
gravel. So each blob must have a plate's shape, and the PP-OCR recogniser must
read at least MIN_ALNUM letters or digits in it. Kept boxes are padded from
the characters out to the plate's border.

Both networks take NCHW float32 BGR, (x / 255 - 0.5) / 0.5; the detector's
int8 copy takes those values' 8-bit codes, NHWC uint8 (tools/derive_int8.py,
code_input). The detector needs H and W multiples of 32; the recogniser H = 48.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from pii_blur.geometry import nms
from pii_blur.models.base import (BATCH_PIXELS, INPUT_MULTIPLE, Detector, DetectorConfig, input_codes, onnx_session,
                                  register, round_up, run_in_batches, to_codes)
from pii_blur.models.weights import read_vendored, weights_for
from pii_blur.types import Detection

PIXEL_THRESHOLD = 0.3      # text probability for a pixel to join a blob
UNCLIP_RATIO = 1.6         # DB's shrink ratio in training
# Photos are upscaled until their short side is at least this (PP-OCR's own
# default). Measured with benchmarks/plate_resolution.py on the dev plates shown
# at a 360 px short side: 44 of 45 plates found at 736, 43 at 704, 42 at 640,
# 41 at 576, 35 without upscaling; at the stored 720 px, 44 at 736 and 43
# without. No cheaper value kept recall, so small photos pay for the upscale.
MIN_SHORT_SIDE = 736
MAX_LONG_SIDE = 6144       # never run on more than this many pixels along the long side
MAX_CANDIDATES = 1000
# Plate shape: a line of 4-10 characters, or a two-line plate. Text-line
# height in image pixels must be enough to carry readable characters.
MIN_ASPECT, MAX_ASPECT = 1.0, 8.0
MIN_TEXT_HEIGHT = 6.0
# From the characters' box out to the plate's border, per side, as a
# fraction of the text box's width and height.
PAD_X, PAD_Y = 0.12, 0.35
# The recogniser must read at least this many Latin letters or digits.
MIN_ALNUM = 3
REC_HEIGHT, REC_MAX_WIDTH = 48, 480
# The recogniser reads crops up to this many times the narrowest of their batch wide.
REC_WIDTH_SPREAD = 1.5


def threshold_for(min_probability: float) -> float:
    """Mean blob probability needed, for MIN_PERCENTAGE_PROBABILITY / 100.

    PP-OCR's own default box threshold is 0.5; the recommended 40 maps to 0.5,
    and the range 1..100 maps linearly onto 0.35..0.725.
    """
    return 0.35 + 0.375 * min_probability


@register("onnx-ppocr-plate")
class PlateDetector(Detector):
    """precision (config.precision_of): "int8" runs the text detector's statically
    quantised copy (tools/derive_int8.py); the recogniser is fp32 either way."""

    labels = ("plate",)

    def __init__(self, config: DetectorConfig):
        self.threshold = threshold_for(config.min_probability)
        self.precision = config.precision_of("onnx-ppocr-plate")
        self.session = onnx_session(read_vendored(weights_for("ppocrv4_det_folded.onnx", self.precision)),
                                    config.threads)
        self.batch_pixels = BATCH_PIXELS[config.device]
        self.codes = input_codes(self.session)   # None: float planes (fp32)
        self.reader = TextReader(config.threads)

    def detect(self, images_rgb: Sequence[np.ndarray], rescale: bool = True) -> list[list[Detection]]:
        """rescale: upscale small images (see network_size); False runs at the
        given resolution, for callers that choose it (panorama views). Images
        of one network size (e.g. panorama views) share a session.run on a GPU (BATCH_PIXELS)."""
        found: list[list[Detection]] = [[] for _ in images_rgb]
        sizes = [network_size(image.shape[:2], rescale) for image in images_rgb]

        def to_input(image):
            return preprocess(image, rescale) if self.codes is None else codes(image, rescale, self.codes)

        for index, (probability,) in run_in_batches(self.session, images_rgb, sizes, to_input, self.batch_pixels):
            found[index] = self._plates(images_rgb[index], probability[0])
        return found

    def _plates(self, image_rgb: np.ndarray, probability: np.ndarray) -> list[Detection]:
        """Plates in one image from its text probability map; the recogniser reads only
        the plate-shaped candidates, all in one session.run."""
        height, width = image_rgb.shape[:2]
        net_h, net_w = probability.shape
        rects = text_regions(probability, self.floor)
        detections = []
        factor = np.array([width / net_w, height / net_h], dtype=np.float32)
        candidates = [(cv2.boxPoints(rect) * factor, score) for rect, score in rects
                      if looks_like_plate(rect[1], factor)]
        texts = self.reader.read(image_rgb, [corners for corners, _ in candidates])
        boxes, scores = [], []
        for (corners, score), text in zip(candidates, texts):
            if sum(char.isascii() and char.isalnum() for char in text) < MIN_ALNUM:
                continue
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


def network_size(image_size: tuple[int, int], rescale: bool) -> tuple[int, int]:
    """The detector input's (height, width) for an image of (height, width) pixels (see preprocess)."""
    height, width = image_size
    scale = max(1.0, MIN_SHORT_SIDE / min(height, width)) if rescale else 1.0
    scale = min(scale, MAX_LONG_SIDE / max(height, width))
    return round_up(height * scale, INPUT_MULTIPLE), round_up(width * scale, INPUT_MULTIPLE)


def resized_bgr(image_rgb: np.ndarray, rescale: bool) -> np.ndarray:
    """An HxWx3 uint8 RGB image as BGR at the detector's input size (network_size), bilinear."""
    net_h, net_w = network_size(image_rgb.shape[:2], rescale)
    if (net_h, net_w) == image_rgb.shape[:2]:   # e.g. panorama views, shrunk to this size by the caller
        return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    return cv2.resize(image_rgb[:, :, ::-1], (net_w, net_h), interpolation=cv2.INTER_LINEAR)


def preprocess(image_rgb: np.ndarray, rescale: bool) -> np.ndarray:
    """The detector's 1x3xHxW float32 BGR input, (x / 255 - 0.5) / 0.5, for an HxWx3 uint8 RGB image.

    rescale: upscale small images (MIN_SHORT_SIDE); H and W are rounded up
    to multiples of 32 either way. tools/derive_int8.py calibrates on exactly this.
    """
    bgr = resized_bgr(image_rgb, rescale)
    # Two passes straight into the contiguous planes ONNX Runtime wants, the same
    # float32 values as astype / 127.5 - 1 (four passes and a copy: 6.9 against
    # 2.7 ms for a 400x267 photo's 736x1120 input).
    planes = np.empty((1, 3, *bgr.shape[:2]), np.float32)
    np.divide(bgr.transpose(2, 0, 1), np.float32(127.5), out=planes[0], dtype=np.float32)
    planes -= 1.0
    return planes


def codes(image_rgb: np.ndarray, rescale: bool, table: np.ndarray) -> np.ndarray:
    """The int8 detector's 1xHxWx3 uint8 input: each pixel value of the resized BGR image as its
    code (base.input_codes), the byte ONNX Runtime would quantise preprocess's float to."""
    return to_codes(resized_bgr(image_rgb, rescale), table)


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


class TextReader:
    """PP-OCRv4 text recogniser: the characters in quadrilateral text regions.

    CTC output T x C: class 0 is the blank, 1..C-2 the model's character list
    (stored in its metadata), C-1 a space.
    """

    def __init__(self, threads: int):
        self.session = onnx_session(read_vendored("ppocrv4_rec.onnx"), threads)
        self.input_name = self.session.get_inputs()[0].name
        characters = self.session.get_modelmeta().custom_metadata_map["character"].split("\n")
        self.alphabet = np.array(["", *characters, " "], dtype=object)

    def read(self, image_rgb: np.ndarray, quads: list[np.ndarray]) -> list[str]:
        """Text in each quad (4x2 corner points in image pixels).

        Crops of similar width share a session.run (widths within
        REC_WIDTH_SPREAD of the narrowest), so a few long text lines do not
        pad every short one to their width.
        """
        crops = [upright_crop(image_rgb, quad) for quad in quads]
        widths = [min(REC_MAX_WIDTH, max(1, int(np.ceil(REC_HEIGHT * c.shape[1] / c.shape[0])))) for c in crops]
        texts = [""] * len(crops)
        order = sorted(range(len(crops)), key=widths.__getitem__)
        while order:
            narrowest = widths[order[0]]
            group = [i for i in order if widths[i] <= REC_WIDTH_SPREAD * narrowest]
            order = order[len(group):]
            batch = np.zeros((len(group), 3, REC_HEIGHT, round_up(widths[group[-1]], 8)), np.float32)
            for row, index in enumerate(group):
                resized = cv2.resize(crops[index][:, :, ::-1], (widths[index], REC_HEIGHT)).astype(np.float32)
                batch[row, :, :, :widths[index]] = (resized / 127.5 - 1.0).transpose(2, 0, 1)
            classes = self.session.run(None, {self.input_name: batch})[0].argmax(axis=2)
            for row, index in enumerate(group):
                texts[index] = self._ctc_decode(classes[row])
        return texts

    def _ctc_decode(self, classes: np.ndarray) -> str:
        """Greedy CTC: merge repeats, drop blanks."""
        keep = np.ones(len(classes), bool)
        keep[1:] = classes[1:] != classes[:-1]
        keep &= classes != 0
        return "".join(self.alphabet[classes[keep]])


def upright_crop(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quad's pixels warped to an axis-aligned rectangle, text running left to right."""
    # Order corners: top-left, top-right, bottom-right, bottom-left.
    sums, diffs = quad.sum(axis=1), np.diff(quad, axis=1)[:, 0]
    ordered = np.array([quad[sums.argmin()], quad[diffs.argmin()], quad[sums.argmax()], quad[diffs.argmax()]],
                       np.float32)
    width = int(max(np.linalg.norm(ordered[0] - ordered[1]), np.linalg.norm(ordered[3] - ordered[2]), 2))
    height = int(max(np.linalg.norm(ordered[0] - ordered[3]), np.linalg.norm(ordered[1] - ordered[2]), 2))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    crop = cv2.warpPerspective(image, cv2.getPerspectiveTransform(ordered, target), (width, height),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.rot90(crop) if height > 1.5 * width else crop
