"""Feathered elliptical cover (blur, pixelate or fill) of detected regions. Pure numpy/OpenCV.

Each region is an ellipse around a detection box, sized to take in the whole
object (a face's hair and chin, a plate's frame) plus a margin in pixels for
boxes that are a few pixels off. Inside the ellipse the image is fully
replaced by its cover; outside, the cover fades out smoothly over a feather
band instead of ending in a hard edge.

The cover's strength grows with the object's size, so a large close face
loses as much detail as a small far one, and never falls below a floor in
pixels, so that a face a few pixels high loses its detail too:

* blur: a Gaussian of sigma = max(min_sigma_px, sigma_fraction x shorter side);
* pixelate: square blocks of side max(min_block_px, block_fraction x shorter side),
  each the mean of its pixels;
* fill: the region's mean colour.

The same policy covers panoramas (pii_blur.sphere), in a view centred on
each object.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional

import cv2
import numpy as np

from pii_blur.types import Detection

MODES = ("blur", "pixelate", "fill")
DEFAULT_MODE = "blur"


@dataclasses.dataclass(frozen=True)
class BlurStyle:
    """How one label is covered.

    axis_scale: ellipse semi-axes (x, y) as a multiple of half the box's
        width, height. 1.0 is the inscribed ellipse; sqrt(2) (~1.41) passes
        through the corners.
    margin_px: added to both semi-axes, in pixels (matters for small boxes).
    sigma_fraction: blur: Gaussian sigma as a fraction of the box's shorter side.
    min_sigma_px: blur: the floor on sigma, in pixels.
    block_fraction: pixelate: block side as a fraction of the box's shorter side.
    min_block_px: pixelate: the floor on the block side, in pixels.
    feather_fraction: width of the fade-out band, as a fraction of the
        ellipse's radius (0.3 means the cover fades to nothing at 1.3 radii).
    """

    axis_scale: tuple[float, float] = (1.1, 1.3)
    margin_px: float = 1.5
    sigma_fraction: float = 0.2
    min_sigma_px: float = 4.0
    block_fraction: float = 0.25
    min_block_px: float = 12.0
    feather_fraction: float = 0.15

    def semi_axes(self, box_w, box_h):
        """Ellipse semi-axes (x, y) in pixels for a box of box_w x box_h pixels (floats or arrays)."""
        return (box_w / 2 * self.axis_scale[0] + self.margin_px,
                box_h / 2 * self.axis_scale[1] + self.margin_px)

    def sigma_px(self, short_side_px: float) -> float:
        """Blur sigma in pixels for an object whose box's shorter side is short_side_px."""
        return max(self.min_sigma_px, self.sigma_fraction * short_side_px)

    def block_px(self, short_side_px: float) -> int:
        """Pixelate block side in pixels for an object whose box's shorter side is short_side_px."""
        return int(math.ceil(max(self.min_block_px, self.block_fraction * short_side_px)))


# Faces: a head-shaped ellipse, taller than wide, around the detector's face box.
# Plates: an ellipse through the box's padded corners, so no character survives.
# Numbers measured with blur_eval.py (README, "The blur").
DEFAULT_STYLES = {
    "face": BlurStyle(axis_scale=(1.1, 1.3)),
    "plate": BlurStyle(axis_scale=(1.4, 1.5), sigma_fraction=0.35, block_fraction=0.35),
}
WHOLE_OBJECT_STYLE = BlurStyle(axis_scale=(1.2, 1.2), sigma_fraction=0.1, block_fraction=0.1)


def style_for(label: str) -> BlurStyle:
    return DEFAULT_STYLES.get(label, WHOLE_OBJECT_STYLE)


def check_mode(mode: str) -> None:
    """Raises ValueError for a mode not in MODES."""
    if mode not in MODES:
        raise ValueError(f"unknown cover mode {mode!r}; choose from {MODES}")


def blur_detections(pixels: np.ndarray, detections: Iterable[Detection], mode: str = DEFAULT_MODE) -> np.ndarray:
    """Return a copy of `pixels` with every detection covered (mode: one of MODES).

    pixels: HxW or HxWxC, uint8 or uint16 (or float32); boxes in the same pixel frame.
    """
    check_mode(mode)
    out = pixels.copy()
    for detection in detections:
        blur_ellipse(out, detection.box, style_for(detection.label), mode)
    return out


def blur_mask(height: int, width: int, detections: Iterable[Detection]) -> np.ndarray:
    """HxW float32 cover strength in [0, 1] that blur_detections applies (1 = fully covered)."""
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
    """The feathered ellipse around a box: its extent, cover strength and alpha."""

    def __init__(self, box, style: BlurStyle):
        x1, y1, x2, y2 = box
        box_w, box_h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        self.cx, self.cy = (x1 + x2) / 2, (y1 + y2) / 2
        self.semi_x, self.semi_y = style.semi_axes(box_w, box_h)
        self.sigma = style.sigma_px(min(box_w, box_h))
        self.block = style.block_px(min(box_w, box_h))
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
        """Cover strength over a window: 1 inside the ellipse, smoothly 0 past the feather band."""
        ys = (np.arange(top, bottom, dtype=np.float32) + 0.5 - self.cy) / self.semi_y
        xs = (np.arange(left, right, dtype=np.float32) + 0.5 - self.cx) / self.semi_x
        radius = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
        return smoothstep(np.clip((self.reach - radius) / self.feather, 0.0, 1.0))


def blur_ellipse(pixels: np.ndarray, box, style: BlurStyle, mode: str = DEFAULT_MODE) -> None:
    """Cover, in place, a feathered ellipse around `box` ([x1, y1, x2, y2] pixels).

    Raises:
        ValueError: a mode not in MODES.
    """
    check_mode(mode)
    ellipse = _Ellipse(box, style)
    # The margin lets pixels near the edge be blurred with their real neighbours.
    margin = {"blur": 3 * ellipse.sigma, "pixelate": ellipse.block, "fill": 0.0}[mode]
    window = ellipse.window(*pixels.shape[:2], margin=margin)
    if window is None:
        return
    top, bottom, left, right = window
    region = pixels[top:bottom, left:right]
    alpha = ellipse.alpha(top, bottom, left, right)
    # Pixelate blocks are aligned on the ellipse's centre, wherever the window was clipped.
    origin = (int(round(ellipse.cy - top)) % ellipse.block, int(round(ellipse.cx - left)) % ellipse.block)
    covered = cover(region.astype(np.float32), mode, ellipse.sigma, ellipse.block, alpha, origin)
    mix_into(region, covered, alpha)


def cover(region: np.ndarray, mode: str, sigma_px: float, block_px: int, alpha: np.ndarray,
          origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The fully covered version of a float32 HxW(xC) region, same shape.

    blur: Gaussian of sigma_px; pixelate: blocks of block_px, the grid
    through pixel `origin` (row, column); fill: the alpha-weighted mean
    colour (alpha: HxW weights, the cover's strength).

    Raises:
        ValueError: a mode not in MODES.
    """
    check_mode(mode)
    if mode == "blur":
        return gaussian_blur(region, sigma_px)
    if mode == "pixelate":
        return pixelate(region, block_px, origin)
    weights = alpha.reshape(alpha.shape + (1,) * (region.ndim - 2))
    total = float(alpha.sum())
    mean = (region * weights).sum(axis=(0, 1)) / total if total > 0 else region.mean(axis=(0, 1))
    return np.broadcast_to(np.asarray(mean, np.float32), region.shape)


def mix_into(region: np.ndarray, covered: np.ndarray, alpha: np.ndarray) -> None:
    """region = region x (1 - alpha) + covered x alpha, in place, rounded and clipped to region's dtype.

    region: HxW(xC) of any dtype; covered: float32, same shape; alpha: HxW in [0, 1].
    """
    if region.ndim == 3:
        alpha = alpha[:, :, None]
    mixed = region.astype(np.float32)   # then in place: the same values in five passes, not eight
    mixed *= 1 - alpha
    mixed += covered * alpha
    if np.issubdtype(region.dtype, np.integer):
        np.rint(mixed, out=mixed)
        np.clip(mixed, 0, np.iinfo(region.dtype).max, out=mixed)
    region[...] = mixed


def smoothstep(t: np.ndarray) -> np.ndarray:
    """C1-smooth ramp 0 -> 1 for t in [0, 1]."""
    return t * t * (3 - 2 * t)


def pixelate(region: np.ndarray, block_px: int, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Mosaic of a float32 HxW(xC) array: each block_px x block_px block becomes its mean, same shape.

    The block grid passes through pixel `origin` (row, column); blocks cut
    by the array's edge average only the pixels inside.
    """
    block = max(int(block_px), 1)
    height, width = region.shape[:2]
    pad_top, pad_left = (-origin[0]) % block, (-origin[1]) % block
    rows = -(-(height + pad_top) // block) * block
    columns = -(-(width + pad_left) // block) * block
    pads = ((pad_top, rows - height - pad_top), (pad_left, columns - width - pad_left))
    channels = ((0, 0),) * (region.ndim - 2)
    shape = (rows // block, block, columns // block, block)
    sums = np.pad(region, pads + channels).reshape(shape + region.shape[2:]).sum(axis=(1, 3))
    counts = np.pad(np.ones((height, width), np.float32), pads).reshape(shape).sum(axis=(1, 3))
    means = sums / counts.reshape(counts.shape + (1,) * (region.ndim - 2))   # every block holds a pixel
    full = np.repeat(np.repeat(means, block, axis=0), block, axis=1)
    return np.ascontiguousarray(full[pad_top:pad_top + height, pad_left:pad_left + width]).astype(np.float32)


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
