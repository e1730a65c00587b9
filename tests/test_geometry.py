import numpy as np
import pytest

from pii_blur.geometry import box_upright_to_stored, nms, to_upright



@pytest.mark.parametrize("orientation", range(1, 9))
def test_box_maps_back_to_the_same_stored_pixels(orientation):
    stored = np.zeros((60, 100), np.uint8)
    stored[10:20, 30:45] = 1                      # a marked box in stored pixels
    upright = to_upright(stored, orientation)
    ys, xs = np.nonzero(upright)
    box_upright = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    box_stored = box_upright_to_stored(box_upright, orientation, upright.shape[1], upright.shape[0])
    assert box_stored == (30, 10, 45, 20)


def test_orientation_6_turns_clockwise():
    stored = np.arange(6).reshape(2, 3)           # [[0 1 2], [3 4 5]]
    assert to_upright(stored, 6).tolist() == [[3, 0], [4, 1], [5, 2]]
    assert to_upright(stored, 8).tolist() == [[2, 5], [1, 4], [0, 3]]


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.5, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
