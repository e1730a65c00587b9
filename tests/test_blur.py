import cv2
import numpy as np

from conftest import ASTRONAUT_FACE_BOX, high_frequency_energy
from pii_blur.blur import blur_detections, blur_mask
from pii_blur.types import Detection


def test_face_detail_is_gone_and_far_pixels_untouched(astronaut):
    face = Detection("face", 0.9, ASTRONAUT_FACE_BOX)
    blurred = blur_detections(astronaut, [face])
    assert high_frequency_energy(blurred, ASTRONAUT_FACE_BOX) < 0.15 * high_frequency_energy(astronaut, ASTRONAUT_FACE_BOX)
    assert np.array_equal(blurred[400:, :], astronaut[400:, :])
    assert np.array_equal(blurred[:, 420:], astronaut[:, 420:])


def test_large_face_is_as_unrecognisable_as_a_small_one(astronaut):
    """Sigma scales with the box, so the remaining detail is about the same at 1x and 4x size."""
    remaining = []
    for scale in (1, 4):
        image = cv2.resize(astronaut, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        box = tuple(v * scale for v in ASTRONAUT_FACE_BOX)
        blurred = blur_detections(image, [Detection("face", 0.9, box)])
        # compare at the same (1x) resolution, as a viewer scaled to the face would
        small = cv2.resize(blurred, (512, 512), interpolation=cv2.INTER_AREA)
        remaining.append(high_frequency_energy(small, ASTRONAUT_FACE_BOX))
    assert remaining[1] < 1.5 * remaining[0]


def test_edge_fades_instead_of_cutting():
    mask = blur_mask(400, 400, [Detection("face", 0.9, (150, 150, 250, 250))])
    assert mask[200, 200] == 1.0 and mask[0, 0] == 0.0
    # Along a row through the centre, strength changes by small steps, never a jump.
    assert np.abs(np.diff(mask[200])).max() < 0.1
    assert 0.05 < mask[200, 200 + 75] < 0.95   # inside the feather band, partly blurred


def test_blur_keeps_dtype_and_channels():
    image16 = (np.random.default_rng(0).random((100, 120)) * 65535).astype(np.uint16)
    blurred = blur_detections(image16, [Detection("plate", 0.9, (20, 40, 80, 60))])
    assert blurred.dtype == np.uint16 and blurred.shape == image16.shape
    rgba = np.random.default_rng(1).integers(0, 255, (100, 120, 4), dtype=np.uint8)
    assert blur_detections(rgba, [Detection("face", 0.9, (10, 10, 50, 60))]).shape == rgba.shape
