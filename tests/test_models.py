import cv2
import numpy as np
import pytest
import skimage.data

from conftest import ASTRONAUT_FACE_BOX, render_car_with_plate
from pii_blur.models import DetectorConfig, available_detectors, create_detector


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_centerface_finds_the_astronaut(face_detector, astronaut):
    [faces] = face_detector.detect([astronaut])
    assert len(faces) == 1
    assert faces[0].label == "face" and faces[0].score > 0.8
    assert iou(faces[0].box, ASTRONAUT_FACE_BOX) > 0.7


def test_centerface_scales_boxes_to_any_input_size(face_detector, astronaut):
    big = cv2.resize(astronaut, (1536, 1024))   # non-square, non-multiple-of-32 after scaling
    [faces] = face_detector.detect([big])
    expected = (ASTRONAUT_FACE_BOX[0] * 3, ASTRONAUT_FACE_BOX[1] * 2, ASTRONAUT_FACE_BOX[2] * 3, ASTRONAUT_FACE_BOX[3] * 2)
    assert len(faces) == 1 and iou(faces[0].box, expected) > 0.6


def test_no_faces_or_plates_in_a_rocket(face_detector, plate_detector):
    rocket = skimage.data.rocket()
    assert face_detector.detect([rocket]) == [[]]
    assert plate_detector.detect([rocket]) == [[]]


def test_plate_detector_covers_a_rendered_plate(plate_detector):
    [plates] = plate_detector.detect([render_car_with_plate()])
    assert len(plates) == 1
    x1, y1, x2, y2 = plates[0].box
    assert x1 <= 295 and y1 <= 305 and x2 >= 425 and y2 >= 335   # the whole plate, border included


def test_higher_probability_means_fewer_faces(astronaut):
    crowd = np.concatenate([astronaut, cv2.resize(astronaut, (256, 256)).repeat(2, 0).repeat(2, 1)], axis=1)
    low = create_detector("onnx-centerface", DetectorConfig(min_probability=0.1, threads=1)).detect([crowd])[0]
    high = create_detector("onnx-centerface", DetectorConfig(min_probability=1.0, threads=1)).detect([crowd])[0]
    assert len(high) <= len(low) and all(d.score >= 0.5 for d in high)


def test_unknown_detector_lists_the_valid_ones():
    with pytest.raises(ValueError, match="onnx-centerface"):
        create_detector("nope", DetectorConfig())
    assert {"onnx-centerface", "onnx-ppocr-plate"} <= set(available_detectors())
