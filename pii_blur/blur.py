"""Feathered elliptical Gaussian blur of detected regions. Pure numpy/OpenCV.

Each region is an ellipse around a detection box. Inside the ellipse the image
is fully replaced by a Gaussian blur whose sigma grows with the object's size,
so a large close face loses as much detail as a small far one; outside, the
blur fades out smoothly over a feather band instead of ending in a hard edge.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import cv2
import numpy as np

from pii_blur.types import Detection


@dataclasses.dataclass(frozen=True)
class BlurStyle:
    """How one label is blurred.

    axis_scale: ellipse semi-axes as a multiple of half the box's width, height.
        1.0 is the inscribed ellipse; sqrt(2) (~1.42) passes through the corners.
    sigma_fraction: Gaussian sigma as a fraction of the box's shorter side.
    feather_fraction: width of the fade-out band, as a fraction of the
        ellipse's radius (0.3 means the blur fades to nothing at 1.3 radii).
    """

    axis_scale: tuple[float, float] = (1.25, 1.3)
    sigma_fraction: float = 0.2
    feather_fraction: float = 0.3
    min_sigma: float = 2.0


# Faces: a tall ellipse a little larger than the box, to take in hair and chin.
# Plates: an ellipse through the box's padded corners, so no character survives.
DEFAULT_STYLES = {
    "face": BlurStyle(axis_scale=(1.25, 1.3), sigma_fraction=0.2),
    "plate": BlurStyle(axis_scale=(1.5, 1.6), sigma_fraction=0.35),
}
WHOLE_OBJECT_STYLE = BlurStyle(axis_scale=(1.2, 1.2), sigma_fraction=0.1)


def style_for(label: str) -> BlurStyle:
    return DEFAULT_STYLES.get(label, WHOLE_OBJECT_STYLE)


def blur_detections(pixels: np.ndarray, detections: Iterable[Detection]) -> np.ndarray:
    """Return a copy of `pixels` with every detection blurred.

    pixels: HxW or HxWxC, uint8 or uint16; boxes in the same pixel frame.
    """
    out = pixels.copy()
    for detection in detections:
        blur_ellipse(out, detection.box, style_for(detection.label))
    return out


def blur_mask(height: int, width: int, detections: Iterable[Detection]) -> np.ndarray:
    """HxW float32 blur strength in [0, 1] that blur_detections applies (1 = fully blurred)."""
    mask = np.zeros((height, width), np.float32)
    for detection in detections:
        ellipse = _Ellipse(detection.box, style_for(detection.label))
        window = ellipse.window(height, width, margin=0)
        if window is not None:
            top, bottom, left, right = window
            np.maximum(mask[top:bottom, left:right], ellipse.alpha(top, bottom, left, right),
                       out=mask[top:bottom, left:right])
    return mask


class _Ellipse:
    """The feathered ellipse around a box: its extent, sigma and alpha."""

    def __init__(self, box, style: BlurStyle):
        x1, y1, x2, y2 = box
        box_w, box_h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        self.cx, self.cy = (x1 + x2) / 2, (y1 + y2) / 2
        self.semi_x, self.semi_y = box_w / 2 * style.axis_scale[0], box_h / 2 * style.axis_scale[1]
        self.sigma = max(style.min_sigma, style.sigma_fraction * min(box_w, box_h))
        self.feather = style.feather_fraction
        self.reach = 1.0 + style.feather_fraction

    def window(self, height: int, width: int, margin: float):
        """(top, bottom, left, right) of the ellipse's reach plus `margin` pixels, clipped; None if empty."""
        left = int(max(np.floor(self.cx - self.semi_x * self.reach - margin), 0))
        right = int(min(np.ceil(self.cx + self.semi_x * self.reach + margin), width))
        top = int(max(np.floor(self.cy - self.semi_y * self.reach - margin), 0))
        bottom = int(min(np.ceil(self.cy + self.semi_y * self.reach + margin), height))
        return None if right <= left or bottom <= top else (top, bottom, left, right)

    def alpha(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """Blur strength over a window: 1 inside the ellipse, smoothly 0 past the feather band."""
        ys = (np.arange(top, bottom, dtype=np.float32) + 0.5 - self.cy) / self.semi_y
        xs = (np.arange(left, right, dtype=np.float32) + 0.5 - self.cx) / self.semi_x
        radius = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
        return smoothstep(np.clip((self.reach - radius) / self.feather, 0.0, 1.0))


def blur_ellipse(pixels: np.ndarray, box, style: BlurStyle) -> None:
    """Blur, in place, a feathered ellipse around `box` ([x1, y1, x2, y2] pixels)."""
    ellipse = _Ellipse(box, style)
    # The margin lets pixels near the edge be blurred with their real neighbours.
    window = ellipse.window(*pixels.shape[:2], margin=3 * ellipse.sigma)
    if window is None:
        return
    top, bottom, left, right = window
    region = pixels[top:bottom, left:right]
    blurred = gaussian_blur(region.astype(np.float32), ellipse.sigma)
    alpha = ellipse.alpha(top, bottom, left, right)
    if region.ndim == 3:
        alpha = alpha[:, :, None]
    mixed = region.astype(np.float32) * (1 - alpha) + blurred * alpha
    if np.issubdtype(pixels.dtype, np.integer):
        mixed = np.clip(np.rint(mixed), 0, np.iinfo(pixels.dtype).max)
    region[...] = mixed.astype(pixels.dtype)


def smoothstep(t: np.ndarray) -> np.ndarray:
    """C1-smooth ramp 0 -> 1 for t in [0, 1]."""
    return t * t * (3 - 2 * t)


def gaussian_blur(region: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float32 HxW(xC) array with standard deviation `sigma` pixels.

    Large sigmas are done at reduced resolution (blur commutes with scaling), so
    the cost stays near-constant whatever the object's size.
    """
    height, width = region.shape[:2]
    shrink = max(1.0, sigma / 4.0)
    if shrink > 1.5 and min(height, width) / shrink >= 4:
        small_size = (max(int(round(width / shrink)), 1), max(int(round(height / shrink)), 1))
        small = cv2.resize(region, small_size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / shrink, borderType=cv2.BORDER_REFLECT)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR).reshape(region.shape)
    return cv2.GaussianBlur(region, (0, 0), sigma, borderType=cv2.BORDER_REFLECT).reshape(region.shape)
