import cv2
import numpy as np
import pytest

from conftest import ASTRONAUT_FACE_BOX, high_frequency_energy
from pii_blur import sphere
from pii_blur.blur import MODES, BlurStyle, blur_detections, blur_ellipse, blur_mask, mix_into, pixelate, style_for
from pii_blur.types import Detection

# The astronaut shrunk 14x and pasted into the full-size photo: a real face
# 7 x 9 px, as in a crowd, with real surroundings.
SHRINK = 14
SMALL_AT = (300, 200)   # (x, y) of the shrunk photo's top-left corner
# A cover must leave less than this share of the face's fine detail.
KEPT_AT_MOST = 0.15


def small_face_scene(astronaut):
    """(image, face box): the shrunk astronaut, face about 7 x 9 px, inside the full-size one."""
    small = cv2.resize(astronaut, None, fx=1 / SHRINK, fy=1 / SHRINK, interpolation=cv2.INTER_AREA)
    scene = astronaut.copy()
    x, y = SMALL_AT
    scene[y:y + small.shape[0], x:x + small.shape[1]] = small
    x1, y1, x2, y2 = (v / SHRINK for v in ASTRONAUT_FACE_BOX)
    return scene, (x + x1, y + y1, x + x2, y + y2)


def fine_detail(rgb, box):
    """The grey image's Laplacian after a sigma = 1 px Gaussian, over box [x1, y1, x2, y2] (floats,
    rounded outwards) and a 2 px border: the band where a face's readable detail lies."""
    x1, y1 = int(np.floor(box[0])) - 2, int(np.floor(box[1])) - 2
    x2, y2 = int(np.ceil(box[2])) + 2, int(np.ceil(box[3])) + 2
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.Laplacian(cv2.GaussianBlur(grey, (0, 0), 1.0), cv2.CV_32F)[2:-2, 2:-2]


def kept_detail(before, after, box) -> float:
    """Share of the box's fine detail still in `after`: sum(H_before * H_after) / sum(H_before^2).

    1 for a copy, about 0 once the detail is gone. New edges (a mosaic's
    blocks, a fill's border) do not correlate with the face's detail and do
    not count as kept.
    """
    h_before, h_after = fine_detail(before, box), fine_detail(after, box)
    return float((h_before * h_after).sum() / (h_before * h_before).sum())


def test_small_face_detail_is_gone(astronaut):
    scene, box = small_face_scene(astronaut)
    assert 6 <= box[2] - box[0] <= 10 and 6 <= box[3] - box[1] <= 10
    blurred = blur_detections(scene, [Detection("face", 0.9, box)])
    assert high_frequency_energy(blurred, box) < 0.3 * high_frequency_energy(scene, box)
    assert kept_detail(scene, blurred, box) < KEPT_AT_MOST


def test_small_face_test_fails_for_the_earlier_blur(astronaut):
    """The measure tells the earlier blur apart (sigma floor 2 px, an ellipse 1.25 x 1.3 the box and no
    margin): it keeps more of a 7 px face's detail than allowed (0.21)."""
    scene, box = small_face_scene(astronaut)
    weak = scene.copy()
    blur_ellipse(weak, box, BlurStyle(axis_scale=(1.25, 1.3), margin_px=0.0, min_sigma_px=2.0))
    assert kept_detail(scene, weak, box) > KEPT_AT_MOST


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_destroys_small_and_large_faces(astronaut, mode):
    scene, small_box = small_face_scene(astronaut)
    for image, box in ((scene, small_box), (astronaut, ASTRONAUT_FACE_BOX)):
        covered = blur_detections(image, [Detection("face", 0.9, box)], mode)
        assert kept_detail(image, covered, box) < KEPT_AT_MOST, (mode, box)
        # nothing changes beyond the ellipse's feathered reach
        untouched = blur_mask(*image.shape[:2], [Detection("face", 0.9, box)]) == 0
        assert np.array_equal(covered[untouched], image[untouched])


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


def test_ellipse_takes_in_the_head_and_a_margin():
    """Full strength beyond the face box: above it (hair), below it (chin) and to its sides; a small box
    gets margin_px more."""
    style = style_for("face")
    mask = blur_mask(400, 400, [Detection("face", 0.9, (150, 150, 250, 250))])
    assert mask[200, 150:250].min() == 1.0 and mask[150:250, 200].min() == 1.0
    assert mask[200 - 60, 200] == 1.0 and mask[200 + 60, 200] == 1.0   # 10 px above and below the box
    assert mask[200, 200 - 53] == 1.0 and mask[200, 200 + 53] == 1.0   # 3 px on each side
    tiny = blur_mask(40, 40, [Detection("face", 0.9, (16, 16, 24, 24))])
    reach_x = 8 / 2 * style.axis_scale[0] + style.margin_px
    assert tiny[20, int(20 + reach_x) - 1] == 1.0 and reach_x - 8 / 2 * style.axis_scale[0] >= 1.5


def test_edge_fades_instead_of_cutting():
    style = style_for("face")
    mask = blur_mask(400, 400, [Detection("face", 0.9, (150, 150, 250, 250))])
    assert mask[200, 200] == 1.0 and mask[0, 0] == 0.0
    # Along a row through the centre, strength changes by small steps, never a jump: the band is
    # feather_fraction x 56.5 px = 8.5 px wide, so a smoothstep over it rises at most 1.5 / 8.5 per pixel.
    semi_x = style.semi_axes(100, 100)[0]
    assert semi_x * style.feather_fraction >= 8
    assert np.abs(np.diff(mask[200])).max() < 0.2
    middle_of_band = int(200 + semi_x * (1 + style.feather_fraction / 2))
    assert 0.05 < mask[200, middle_of_band] < 0.95   # inside the feather band, partly blurred


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_fades_out_over_the_feather(astronaut, mode):
    """In the feather band a pixel changes at most by its blur strength times the full range: the cover
    fades in with the (smooth) mask instead of starting at full strength at its edge."""
    face = Detection("face", 0.9, ASTRONAUT_FACE_BOX)
    covered = blur_detections(astronaut, [face], mode).astype(np.float32)
    change = np.abs(covered - astronaut.astype(np.float32)).max(axis=2)
    mask = blur_mask(512, 512, [face])
    band = (mask > 0) & (mask < 1)
    assert band.sum() > 1000 and change[band].max() > 20
    assert (change[band] <= mask[band] * 255 + 1).all()


def test_pixelate_blocks_are_means_on_a_grid_through_the_origin():
    region = np.random.default_rng(0).random((13, 17, 3)).astype(np.float32)
    mosaic = pixelate(region, 5, origin=(2, 3))
    assert mosaic.shape == region.shape
    assert np.allclose(mosaic[2:7, 3:8], region[2:7, 3:8].mean(axis=(0, 1)))
    assert np.allclose(mosaic[:2, :3], region[:2, :3].mean(axis=(0, 1)))   # cut by the edge: its own pixels only
    assert np.allclose(mosaic[12:, 13:], region[12:, 13:].mean(axis=(0, 1)))


def test_unknown_mode_is_refused(astronaut):
    with pytest.raises(ValueError, match="pixelate"):
        blur_detections(astronaut, [Detection("face", 0.9, ASTRONAUT_FACE_BOX)], "smudge")


def test_blur_keeps_dtype_and_channels():
    image16 = (np.random.default_rng(0).random((100, 120)) * 65535).astype(np.uint16)
    for mode in MODES:
        blurred = blur_detections(image16, [Detection("plate", 0.9, (20, 40, 80, 60))], mode)
        assert blurred.dtype == np.uint16 and blurred.shape == image16.shape
    rgba = np.random.default_rng(1).integers(0, 255, (100, 120, 4), dtype=np.uint8)
    assert blur_detections(rgba, [Detection("face", 0.9, (10, 10, 50, 60))]).shape == rgba.shape


@pytest.mark.parametrize("mode", MODES)
def test_panorama_cover_is_as_wide_and_strong_as_a_flat_photo(astronaut, mode):
    """The same small face, found in a panorama, is covered at least as widely and as strongly as in a
    flat photo: the sphere blur applies the flat policy in a view centred on the object."""
    width, height = 1024, 512
    pano = cv2.resize(np.concatenate([astronaut, astronaut], axis=1), (width, height), interpolation=cv2.INTER_AREA)
    scene, box = small_face_scene(pano[:, :512])
    pano[:, :512] = scene
    # The panorama itself as a band view: its pixels are the view's pixels.
    band = sphere.View(0.0, 0.0, 360.0, width, height, kind=sphere.EQUIRECT)
    found = sphere.sphere_detection("face", [sphere.Footprint(band, box, 0.9)], width, height)
    flat = Detection("face", 0.9, box)
    assert (sphere.blur_mask(height, width, [found]) >= blur_mask(height, width, [flat]) - 0.02).all()
    on_sphere = sphere.blur_on_sphere(pano, [found], mode)
    as_flat = blur_detections(pano, [flat], mode)
    assert kept_detail(pano, on_sphere, box) < max(kept_detail(pano, as_flat, box) + 0.05, KEPT_AT_MOST)
    assert kept_detail(pano, on_sphere, box) < KEPT_AT_MOST


def test_mode_is_a_cli_option_and_part_of_the_settings_fingerprint():
    from pii_blur.cli import make_parser
    from pii_blur.config import BlurConfig

    parser = make_parser()
    assert parser.parse_args(["in", "out"]).mode == "blur"
    assert parser.parse_args(["in", "out", "--mode", "pixelate"]).mode == "pixelate"
    assert "default: blur" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["in", "out", "--mode", "smudge"])
    fingerprints = {BlurConfig(mode=mode).fingerprint() for mode in MODES}
    assert len(fingerprints) == len(MODES)   # a rerun in another mode redoes every file


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_mixing_rounds_and_clips_into_the_region_in_place(dtype):
    """mix_into is region x (1 - alpha) + covered x alpha, rounded and clipped for integer pixels."""
    rng = np.random.default_rng(7)
    top = 1.0 if dtype == np.float32 else float(np.iinfo(dtype).max)
    region = (rng.random((9, 11, 3)) * top).astype(dtype)
    covered = (rng.random((9, 11, 3)) * 1.4 * top - 0.2 * top).astype(np.float32)   # some beyond the range
    alpha = rng.random((9, 11)).astype(np.float32)
    alpha[0, 0], alpha[0, 1] = 0.0, 1.0
    expected = region.astype(np.float32) * (1 - alpha[:, :, None]) + covered * alpha[:, :, None]
    if dtype != np.float32:
        expected = np.clip(np.rint(expected), 0, top)
    original = region.copy()
    mix_into(region, covered, alpha)
    np.testing.assert_array_equal(region, expected.astype(dtype))
    assert region.dtype == dtype and (region[0, 0] == original[0, 0]).all()
