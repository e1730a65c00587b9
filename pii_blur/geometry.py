"""Plane geometry: EXIF orientation and non-maximum suppression.

Boxes are float arrays [x1, y1, x2, y2] in pixels, x to the right, y down,
with continuous edges (a box covering pixel column 0 only is [0, ., 1, .]).
"""

from __future__ import annotations

import numpy as np

Box = tuple[float, float, float, float]


def to_upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation (1..8) to stored pixels, giving the image as displayed.

    pixels: HxW or HxWxC array. Returns a view where possible.
    """
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.swapaxes(0, 1)
    if orientation == 6:
        return pixels.swapaxes(0, 1)[:, ::-1]
    if orientation == 7:
        return pixels.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return pixels.swapaxes(0, 1)[::-1]
    return pixels


def box_upright_to_stored(box: Box, orientation: int, upright_width: int, upright_height: int) -> Box:
    """Map a box from displayed (upright) pixels back to stored pixels.

    The inverse of `to_upright` for box corners; upright_width/height are the
    displayed image's size in pixels.
    """
    u1, v1, u2, v2 = box
    w, h = upright_width, upright_height
    if orientation == 2:
        xs, ys = (w - u1, w - u2), (v1, v2)
    elif orientation == 3:
        xs, ys = (w - u1, w - u2), (h - v1, h - v2)
    elif orientation == 4:
        xs, ys = (u1, u2), (h - v1, h - v2)
    elif orientation == 5:
        xs, ys = (v1, v2), (u1, u2)
    elif orientation == 6:
        xs, ys = (v1, v2), (w - u1, w - u2)
    elif orientation == 7:
        xs, ys = (h - v1, h - v2), (w - u1, w - u2)
    elif orientation == 8:
        xs, ys = (h - v1, h - v2), (u1, u2)
    else:
        xs, ys = (u1, u2), (v1, v2)
    return (min(xs), min(ys), max(xs), max(ys))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of boxes kept by greedy non-maximum suppression, best first.

    boxes: Nx4 [x1, y1, x2, y2]; scores: N.
    """
    order = np.argsort(-scores)
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        ix1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        iy1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        ix2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        iy2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.maximum(ix2 - ix1, 0) * np.maximum(iy2 - iy1, 0)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)
