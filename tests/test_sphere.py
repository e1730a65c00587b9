"""Tests of pii_blur.sphere: geometry round trips, views, detection and blur on the sphere.

The detection tests render a 2048 x 1024 panorama with scikit-image's
astronaut photo placed at chosen yaw/pitch (across the seam, at ±70° pitch)
and run the real CenterFace detector once for the whole module.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time

import cv2
import numpy as np
import pytest

from pii_blur import sphere
from pii_blur.types import Detection

PANO_W, PANO_H = 2048, 1024
# Where the astronaut photo is placed (yaw, pitch degrees); its face is a bit above the photo centre.
PLACEMENTS = {"equator": (30.0, 0.0), "seam": (180.0, 5.0), "north70": (-100.0, 70.0), "south70": (100.0, -70.0)}
PHOTO_FOV_DEG = 45.0
# The astronaut's face box in the 512 x 512 photo (CenterFace on the flat photo, rounded).
FACE_BOX_IN_PHOTO = (175.0, 54.0, 275.0, 180.0)


# ---------------------------------------------------------------------------
# Projection detection and geometry


@pytest.mark.parametrize("width, height, gpano, expected", [
    (5760, 2880, None, True),
    (5376, 2688, None, True),
    (4000, 1990, None, True),      # 2.01: within 1%
    (4000, 1900, None, False),     # 2.105
    (4000, 3000, None, False),
    (4000, 3000, "equirectangular", True),
    (4000, 3000, "EquiRectangular", True),
    (5760, 2880, "cylindrical", True),  # GPano says otherwise, but 2:1 pixels still look equirect
    (0, 0, None, False),
])
def test_is_equirectangular(width, height, gpano, expected):
    assert sphere.is_equirectangular(width, height, gpano) is expected


def test_yaw_pitch_conventions():
    # Centre column is yaw 0, the top row is the zenith, column 0 starts at yaw -180 (the seam).
    direction = sphere.equirect_pixel_to_direction(np.array(PANO_W / 2), np.array(PANO_H / 2), PANO_W, PANO_H)
    np.testing.assert_allclose(direction, [0, 0, 1], atol=1e-12)
    yaw, pitch = sphere.direction_to_yaw_pitch(sphere.equirect_pixel_to_direction(np.array(0.0), np.array(0.0),
                                                                                PANO_W, PANO_H))
    assert math.degrees(yaw) == pytest.approx(-180) and math.degrees(pitch) == pytest.approx(90)
    x, _ = sphere.direction_to_equirect_pixel(np.array([1.0, 0, 0]), PANO_W, PANO_H)  # yaw +90: right
    assert x == pytest.approx(0.75 * PANO_W)


@pytest.mark.parametrize("width, height", [(2048, 1024), (5760, 2880)])
def test_pixel_view_round_trip_within_half_pixel(width, height):
    """pixel -> direction -> view pixel -> direction -> pixel, for every planned view."""
    rng = np.random.default_rng(0)
    for view in sphere.plan_views(width, height):
        u = rng.uniform(0, view.width, 2000)
        v = rng.uniform(0, view.height, 2000)
        x, y = sphere.direction_to_equirect_pixel(sphere.view_pixel_to_direction(view, u, v), width, height)
        directions = sphere.equirect_pixel_to_direction(x, y, width, height)
        u2, v2, valid = sphere.direction_to_view_pixel(view, directions)
        assert valid.all()
        back = sphere.view_pixel_to_direction(view, u2, v2)
        x2, y2 = sphere.direction_to_equirect_pixel(back, width, height)
        dx = np.abs(np.mod(x2 - x + width / 2, width) - width / 2)
        assert dx.max() < 0.5 and np.abs(y2 - y).max() < 0.5
        du = u2 - u
        if view.kind == sphere.EQUIRECT:  # the seam padding repeats directions one turn apart
            turn = view.focal_px * 2 * math.pi
            du = np.mod(du + turn / 2, turn) - turn / 2
        assert np.abs(du).max() < 0.5 and np.abs(v2 - v).max() < 0.5


def test_equirect_round_trip_across_seam_and_poles():
    x = np.array([0.0, 0.25, PANO_W - 0.25, 1000.5, 3.0, 7.0])
    y = np.array([512.0, 0.5, 700.0, 1023.5, 0.01, PANO_H - 0.01])
    x2, y2 = sphere.direction_to_equirect_pixel(sphere.equirect_pixel_to_direction(x, y, PANO_W, PANO_H),
                                                PANO_W, PANO_H)
    dx = np.abs(np.mod(x2 - x + PANO_W / 2, PANO_W) - PANO_W / 2)
    assert dx.max() < 1e-6 and np.abs(y2 - y).max() < 1e-6


@pytest.mark.parametrize("width, height", [(2048, 1024), (4096, 2048), (5760, 2880)])
def test_plan_views_cover_whole_sphere_with_overlap(width, height):
    views = sphere.plan_views(width, height)
    # Every direction (poles and seam included) is >= 10° inside some view: objects up to ~20° across are whole.
    assert sphere.coverage_margin_deg(views) >= 10.0
    focal = width / (2 * math.pi)
    for view in views[:-1]:  # the panorama's own resolution at every fine view's centre
        assert view.focal_px == pytest.approx(focal, rel=0.01)
    coarse = views[-1]
    assert coarse.kind == sphere.EQUIRECT and coarse.fov_deg > 360
    assert coarse.focal_px == pytest.approx(sphere.COARSE_FRACTION * focal, rel=0.01)


def test_band_tiles_overlap_so_small_objects_are_whole_in_one():
    tiles = sphere.plan_views(5760, 2880, band_only=True)
    assert len(tiles) == 3 and tiles[0].yaw_deg == -180.0  # one tile centred on the seam
    yaw = np.radians(np.linspace(-180, 180, 3601))
    pitch = np.radians(np.linspace(-42.5, 42.5, 35))
    directions = sphere.yaw_pitch_to_direction(yaw[None, :], pitch[:, None])
    best = np.max([sphere.view_margin_deg(tile, directions) for tile in tiles], axis=0)
    assert best.min() >= sphere.TILE_OVERLAP_DEG / 2 - 0.01
    assert sum(tile.width for tile in tiles) <= 405 / 360 * 5760  # 4 % more than one band padded 15° at the seam


def test_plan_views_rejects_unknown_layout():
    with pytest.raises(ValueError, match="choose from"):
        sphere.plan_views(2048, 1024, layout="nope")


def smooth_noise_panorama(seed: int) -> np.ndarray:
    """PANO_H x PANO_W x 3 uint8 smooth noise that is continuous across the seam, as a real panorama is."""
    coarse = np.random.default_rng(seed).integers(0, 255, (16, 32, 3), dtype=np.uint8)
    wrapped = cv2.copyMakeBorder(coarse, 0, 0, 2, 2, cv2.BORDER_WRAP)   # 2 coarse columns each side
    step = PANO_W // 32
    wide = cv2.resize(wrapped, (PANO_W + 4 * step, PANO_H), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(wide[:, 2 * step:2 * step + PANO_W])


def test_render_view_is_continuous_across_the_seam():
    pano = smooth_noise_panorama(1)
    view_at_seam = sphere.perspective_view(180.0, 10.0, 60.0, PANO_W)
    view_at_centre = sphere.perspective_view(0.0, 10.0, 60.0, PANO_W)
    rolled = np.roll(pano, PANO_W // 2, axis=1)  # the seam moves to the centre
    a = sphere.render_view(pano, view_at_seam).astype(int)
    b = sphere.render_view(rolled, view_at_centre).astype(int)
    assert np.abs(a - b).max() <= 1
    band = sphere.plan_views(PANO_W, PANO_H, layout="band50+ring66x4")[0]   # one band padded across the seam
    image = sphere.render_view(pano, band)
    pad = (band.width - PANO_W) // 2
    np.testing.assert_array_equal(image[:, pad:pad + PANO_W], pano[PANO_H // 2 - band.height // 2:][:band.height])
    np.testing.assert_array_equal(image[:, :pad], image[:, PANO_W:PANO_W + pad])
    tile_at_seam, tile_at_centre = sphere.plan_views(PANO_W, PANO_H, band_only=True)[:2]
    tile_at_centre = dataclasses.replace(tile_at_centre, yaw_deg=0.0)
    np.testing.assert_array_equal(sphere.render_view(pano, tile_at_seam), sphere.render_view(rolled, tile_at_centre))


def test_render_view_keeps_dtype_and_channels():
    view = sphere.perspective_view(10.0, -80.0, 90.0, 512)
    for pano in (np.zeros((256, 512), np.uint16), np.zeros((256, 512, 4), np.uint8)):
        out = sphere.render_view(pano, view)
        assert out.dtype == pano.dtype and out.shape[:2] == (view.height, view.width)
        assert out.shape[2:] == pano.shape[2:]


def test_threads_rendering_same_size_panoramas_share_the_making_of_the_maps(monkeypatch):
    """Two worker threads starting on panoramas of a size not seen yet make each view's maps
    once between them, and get the pixels one thread alone gets."""
    made = collections.Counter()
    float_maps = sphere._float_maps

    def slow_counted(pano_width, pano_height, view):
        made[view] += 1
        time.sleep(0.02)   # so that both threads are at work together
        return float_maps(pano_width, pano_height, view)

    monkeypatch.setattr(sphere, "_float_maps", slow_counted)
    width, height = 1004, 502   # a size no other test renders: nothing cached yet
    views = sphere.plan_views(width, height)
    mapped = [view for view in views if sphere._equirect_crop(view, width, height) is None]
    pano = (np.random.default_rng(3).random((height, width, 3)) * 255).astype(np.uint8)
    start, rendered = threading.Barrier(2), {}

    def worker(name):
        start.wait()
        rendered[name] = sphere.render_views(pano, views)

    threads = [threading.Thread(target=worker, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(mapped) >= 4 and made == collections.Counter(mapped)
    for name in "ab":
        for view, image in zip(views, rendered[name]):
            np.testing.assert_array_equal(image, sphere.render_view(pano, view))


def test_maps_that_failed_to_be_made_are_made_again():
    shared = sphere._SharedMaps(max_entries=2)

    def fail():
        raise MemoryError("no room")

    with pytest.raises(MemoryError):
        shared.get("key", fail)
    assert shared.get("key", lambda: ("x", "y")) == ("x", "y")
    shared.get("other", lambda: ("1", "2"))
    shared.get("third", lambda: ("3", "4"))   # beyond max_entries: "key" was used least recently
    assert shared.get("key", lambda: ("made", "again")) == ("made", "again")


# ---------------------------------------------------------------------------
# Footprints: boxes, masks, merging (no model)


def footprint_at(yaw_deg, pitch_deg, half_deg=4.0, view_yaw=None, view_pitch=None, label="face"):
    """A Footprint: a box of about 2*half_deg around (yaw, pitch), seen in a 90° view."""
    view = sphere.perspective_view(yaw_deg if view_yaw is None else view_yaw,
                                   pitch_deg if view_pitch is None else view_pitch, 90.0, PANO_W)
    centre = sphere.yaw_pitch_to_direction(np.radians(yaw_deg), np.radians(pitch_deg))
    u, v, valid = sphere.direction_to_view_pixel(view, centre)
    assert valid
    half = view.focal_px * math.tan(math.radians(half_deg))
    return sphere.Footprint(view, (float(u - half), float(v - half), float(u + half), float(v + half)), 0.9)


def test_seam_crossing_detection_gets_two_boxes_and_a_wrapped_mask():
    found = sphere.sphere_detection("face", [footprint_at(179.0, 0.0)], PANO_W, PANO_H)
    assert len(found.boxes) == 2
    (a_x1, _, a_x2, _), (b_x1, _, b_x2, _) = found.boxes
    assert a_x2 == PANO_W and b_x1 == 0 and a_x1 > PANO_W / 2 and b_x2 < PANO_W / 2
    assert -180 <= found.yaw_deg < 180 and found.yaw_deg == pytest.approx(179.0, abs=0.1)
    mask = sphere.blur_mask(PANO_H, PANO_W, [found])
    row = PANO_H // 2
    assert mask[row, PANO_W - 1] == 1.0 and mask[row, 0] == 1.0
    assert mask[row, PANO_W // 2] == 0.0


def test_footprint_near_pole_is_wide_and_curved():
    equator = sphere.blur_mask(PANO_H, PANO_W, [sphere.sphere_detection("face", [footprint_at(0.0, 0.0)],
                                                                         PANO_W, PANO_H)])
    polar = sphere.blur_mask(PANO_H, PANO_W, [sphere.sphere_detection("face", [footprint_at(0.0, 75.0)],
                                                                       PANO_W, PANO_H)])
    def extent(mask):
        rows, cols = np.nonzero(mask >= 0.5)
        return cols.max() - cols.min(), rows.max() - rows.min()
    eq_w, eq_h = extent(equator)
    pol_w, pol_h = extent(polar)
    assert pol_h == pytest.approx(eq_h, rel=0.1)
    assert pol_w > 3 * eq_w  # 1 / cos(75°) = 3.9, more at its upper edge
    # Curved: the footprint's upper edge spans more yaw than its lower edge.
    rows = np.nonzero((polar >= 0.5).any(axis=1))[0]
    top, bottom = (polar[rows[2]] >= 0.5).sum(), (polar[rows[-3]] >= 0.5).sum()
    assert top > 1.3 * bottom


def test_footprint_over_the_pole_spans_all_columns():
    found = sphere.sphere_detection("face", [footprint_at(0.0, 89.0, half_deg=3.0)], PANO_W, PANO_H)
    assert found.boxes == ((0, 0, PANO_W, found.boxes[0][3]),)
    mask = sphere.blur_mask(PANO_H, PANO_W, [found])
    assert (mask[0] == 1.0).all()


def test_duplicates_from_overlapping_views_merge_into_one_detection():
    target = sphere.yaw_pitch_to_direction(np.radians(-178.0), np.radians(40.0))
    calls = []

    def fake_detect(images):
        calls.append(len(images))
        results = []
        for view in views:
            # A 6°-wide object at `target`, seen where it is wholly inside the view.
            if sphere.view_margin_deg(view, target) < 4:
                results.append([])
                continue
            u, v, _ = sphere.direction_to_view_pixel(view, target)
            half = 3.0 * view.focal_px * math.pi / 180
            results.append([Detection("face", 0.8, (u - half, v - half, u + half, v + half))])
        return results

    views = sphere.plan_views(PANO_W, PANO_H)
    pano = np.zeros((PANO_H, PANO_W, 3), np.uint8)
    found = sphere.detect_on_sphere(pano, fake_detect, views)
    assert calls == [len(views)]  # one batched call
    assert len(found) == 1
    assert len(found[0].footprints) >= 2  # seen in more than one view
    assert found[0].yaw_deg == pytest.approx(-178.0, abs=0.5)
    assert found[0].pitch_deg == pytest.approx(40.0, abs=0.5)


def test_blur_on_sphere_keeps_dtype_and_leaves_far_pixels_alone():
    rng = np.random.default_rng(2)
    detection = sphere.sphere_detection("face", [footprint_at(60.0, -30.0)], 512, 256)
    for pano in (rng.integers(0, 65535, (256, 512), dtype=np.uint16),
                 rng.integers(0, 255, (256, 512, 3), dtype=np.uint8)):
        out = sphere.blur_on_sphere(pano, [detection])
        assert out.dtype == pano.dtype and out.shape == pano.shape
        mask = sphere.blur_mask(256, 512, [detection])
        np.testing.assert_array_equal(out[mask == 0], pano[mask == 0])
        assert not np.array_equal(out[mask == 1], pano[mask == 1])


# ---------------------------------------------------------------------------
# The real detector on a rendered panorama


def astronaut_pano():
    from skimage import data

    photo = data.astronaut()
    rng = np.random.default_rng(3)
    coarse = rng.integers(70, 190, (8, 16, 3)).astype(np.float32)
    coarse = np.concatenate([coarse, coarse[:, :1]], axis=1)
    pano = cv2.resize(coarse, (PANO_W + PANO_W // 16, PANO_H), interpolation=cv2.INTER_CUBIC)[:, :PANO_W]
    pano = np.clip(pano + rng.normal(0, 8, pano.shape), 0, 255).astype(np.uint8)
    faces = {}
    for name, (yaw, pitch) in PLACEMENTS.items():
        view = sphere.View(yaw, pitch, PHOTO_FOV_DEG, photo.shape[1], photo.shape[0])
        pano = sphere.paste_view(pano, photo, view)
        faces[name] = sphere.Footprint(view, FACE_BOX_IN_PHOTO, 1.0)
    return pano, faces


@pytest.fixture(scope="module")
def scene():
    from pii_blur.models import DetectorConfig, create_detector

    detector = create_detector("onnx-centerface", DetectorConfig(min_probability=0.4, threads=2))
    pano, faces = astronaut_pano()
    def detect_views(images):  # detectors also return near misses below their threshold: not blurred
        return [[d for d in found if d.score >= detector.threshold] for found in detector.detect(images)]

    found = sphere.detect_on_sphere(pano, detect_views)
    blurred = sphere.blur_on_sphere(pano, found)
    return pano, faces, found, blurred, detector


def nearest(found, footprint):
    centre = sphere._footprint_centre(footprint)
    distances = [float(sphere.angular_distance_deg(
        centre, sphere.yaw_pitch_to_direction(np.radians(d.yaw_deg), np.radians(d.pitch_deg)))) for d in found]
    index = int(np.argmin(distances))
    return found[index], distances[index]


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_face_found_anywhere_on_the_sphere(scene, name):
    _, faces, found, _, _ = scene
    detection, distance = nearest(found, faces[name])
    assert detection.label == "face"
    assert distance < 3.0
    truth = sphere.sphere_detection("face", [faces[name]], PANO_W, PANO_H)
    assert len(detection.boxes) == len(truth.boxes)
    if name == "seam":
        assert len(detection.boxes) == 2
        assert detection.boxes[0][2] == PANO_W and detection.boxes[1][0] == 0


def test_no_duplicate_faces(scene):
    _, faces, found, _, _ = scene
    for name, face in faces.items():
        centre = sphere._footprint_centre(face)
        close = [d for d in found if sphere.angular_distance_deg(
            centre, sphere.yaw_pitch_to_direction(np.radians(d.yaw_deg), np.radians(d.pitch_deg))) < 10.0]
        assert len(close) == 1, name


def laplacian_energy(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.mean(cv2.Laplacian(grey, cv2.CV_32F) ** 2))


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_face_is_blurred_equally_at_any_latitude(scene, name):
    """High frequencies in the face, seen in a view centred on it, drop as much at ±70° as at the equator."""
    pano, faces, _, blurred, _ = scene
    face = faces[name]
    view, box = face.view, face.box_in_view
    x1, y1, x2, y2 = (int(round(c)) for c in box)
    before = laplacian_energy(sphere.render_view(pano, view)[y1:y2, x1:x2])
    after = laplacian_energy(sphere.render_view(blurred, view)[y1:y2, x1:x2])
    assert after < 0.05 * before


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_blurred_face_is_not_found_in_a_view_centred_on_it(scene, name):
    """The detector finds the face in the original's view and nothing in the blurred one's, at any latitude."""
    pano, faces, _, blurred, detector = scene
    view = faces[name].view
    original, after = detector.detect([sphere.render_view(pano, view), sphere.render_view(blurred, view)])
    after = [d for d in after if d.score >= detector.threshold]
    x1, y1, x2, y2 = faces[name].box_in_view
    on_face = lambda d: x1 <= (d.box[0] + d.box[2]) / 2 <= x2 and y1 <= (d.box[1] + d.box[3]) / 2 <= y2  # noqa: E731
    assert any(d.score > 0.8 and on_face(d) for d in original)
    assert not [d for d in after if on_face(d)]


def test_pixels_far_from_faces_are_untouched(scene):
    pano, faces, found, blurred, _ = scene
    x = np.arange(PANO_W) + 0.5
    y = np.arange(PANO_H) + 0.5
    directions = sphere.equirect_pixel_to_direction(x[None, :], y[:, None], PANO_W, PANO_H)
    far = np.ones((PANO_H, PANO_W), bool)
    for detection in found:
        centre = sphere.yaw_pitch_to_direction(np.radians(detection.yaw_deg), np.radians(detection.pitch_deg))
        far &= sphere.angular_distance_deg(directions, centre) > 20.0
    assert far.mean() > 0.7
    np.testing.assert_array_equal(blurred[far], pano[far])
    # And the blur fades out: no hard step at the mask's edge.
    mask = sphere.blur_mask(PANO_H, PANO_W, found)
    assert 0.05 * (mask > 0).sum() < ((mask > 0) & (mask < 1)).sum()


def test_blur_is_continuous_across_the_seam(scene):
    pano, faces, found, blurred, _ = scene
    detection, _ = nearest(found, faces["seam"])
    (_, y1, _, y2), _ = detection.boxes
    rows = slice(y1, y2)
    across = np.abs(blurred[rows, 0].astype(int) - blurred[rows, PANO_W - 1].astype(int)).mean()
    inside = np.abs(blurred[rows, PANO_W - 1].astype(int) - blurred[rows, PANO_W - 2].astype(int)).mean()
    inside_other = np.abs(blurred[rows, 1].astype(int) - blurred[rows, 0].astype(int)).mean()
    assert across <= 2 * max(inside, inside_other) + 1.0


def test_reduced_band_tiles_are_area_averaged_crops_in_the_right_place():
    rng = np.random.default_rng(2)
    pano = cv2.resize(rng.integers(0, 255, (16, 32, 3), dtype=np.uint8), (PANO_W, PANO_H),
                      interpolation=cv2.INTER_CUBIC)
    for tile in sphere.plan_views(PANO_W, PANO_H, scale=0.5, band_only=True):
        fast = sphere.render_view(pano, tile).astype(int)
        sampled = sphere._remap(pano, *sphere.view_maps(PANO_W, PANO_H, tile)).astype(int)
        assert fast.shape == sampled.shape
        assert np.abs(fast - sampled).mean() < 1.0 and np.abs(fast - sampled).max() <= 12


@pytest.mark.parametrize("yaw", [0.0, 170.0, -175.0])
def test_equirect_view_coordinates_of_a_patch_match_the_projection(yaw):
    """The separable shortcut for equirect views (band tiles) against the general projection."""
    pano_width, pano_height = 720, 360
    view = sphere.View(yaw, 10.0, 150.0, 300, 200, kind=sphere.EQUIRECT)
    patch = sphere._Patch(40, 160, np.mod(np.arange(300, 760), pano_width))   # wraps the seam
    u, v, valid = sphere._patch_view_pixels(view, patch, pano_width, pano_height)
    directions = sphere._patch_directions(patch, pano_width, pano_height)
    u_ref, v_ref, valid_ref = sphere.direction_to_view_pixel(view, directions)
    np.testing.assert_allclose(u, u_ref, atol=2e-3)
    np.testing.assert_allclose(v, v_ref, atol=2e-3)
    assert valid.all() and valid_ref.all()


def test_patch_index_is_a_slice_unless_it_wraps():
    inside = sphere._Patch(3, 7, np.arange(10, 20))
    assert inside.index == (slice(3, 7), slice(10, 20))
    wrapped = sphere._Patch(3, 7, np.mod(np.arange(715, 725), 720))
    pixels = np.arange(360 * 720).reshape(360, 720)
    assert pixels[wrapped.index].shape == (4, 10)
    assert pixels[wrapped.index][0, 0] == 3 * 720 + 715 and pixels[wrapped.index][0, -1] == 3 * 720 + 4


def test_footprints_mapped_view_by_view_match_each_one_mapped_alone():
    """sphere_detections and the blur outlines map the footprints of many objects in one call per view;
    each object must come out as if it had been mapped alone (seam, poles and shared views included)."""
    shared_view = dict(view_yaw=20.0, view_pitch=0.0)
    groups = [[footprint_at(179.0, 0.0)], [footprint_at(0.0, 88.0, half_deg=3.0)],
              [footprint_at(10.0, 5.0, **shared_view), footprint_at(11.0, 5.0)],
              [footprint_at(30.0, -10.0, **shared_view)], [footprint_at(-120.0, -70.0, half_deg=8.0)]]
    together = sphere.sphere_detections("face", groups, PANO_W, PANO_H)
    alone = [sphere.sphere_detection("face", group, PANO_W, PANO_H) for group in groups]
    assert together == alone
    mask = sphere.blur_mask(PANO_H, PANO_W, together)
    each = np.max([sphere.blur_mask(PANO_H, PANO_W, [d]) for d in alone], axis=0)
    assert np.array_equal(mask, each) and mask.max() == 1.0
    image = np.random.default_rng(5).integers(0, 256, (PANO_H, PANO_W, 3), dtype=np.uint8)
    blurred = sphere.blur_on_sphere(image, together)
    one_by_one = image
    for detection in alone:
        one_by_one = sphere.blur_on_sphere(one_by_one, [detection])
    assert np.array_equal(blurred, one_by_one)


@pytest.mark.parametrize("kind", sphere.CENTRED_KINDS)
@pytest.mark.parametrize("yaw, pitch", [(0.0, 72.0), (-135.0, -72.0), (178.0, 10.0), (90.0, 89.0)])
def test_centred_view_maps_match_the_unit_direction_projection(yaw, pitch, kind):
    """The un-normalised rays of _float_maps against the unit directions, across the seam
    and over a pole: the same maps, to far below the 1/32 px the fixed-point maps resolve."""
    view = sphere.perspective_view(yaw, pitch, 80.0, 5760, 64.0, kind=kind)
    u = np.arange(view.width, dtype=np.float64) + 0.5
    v = np.arange(view.height, dtype=np.float64) + 0.5
    x, y = sphere.direction_to_equirect_pixel(sphere.view_pixel_to_direction(view, u[None, :], v[:, None]),
                                              5760, 2880)
    expected_x, expected_y = sphere._to_index_maps(x, y, 5760, 2880)
    map_x, map_y = sphere._float_maps(5760, 2880, view)
    along_x = np.abs(map_x - expected_x)
    assert np.minimum(along_x, 5760 - along_x).max() < 1e-3
    assert np.abs(map_y - expected_y).max() < 1e-3


def test_a_stereographic_view_is_conformal_and_smaller_than_a_perspective_one():
    """Same field and centre resolution; a small circle on the sphere stays a circle anywhere in the
    view, and the view's pixel scale grows only as 1 / cos^2(angle / 2) off centre."""
    stereo = sphere.perspective_view(20.0, -72.0, 80.0, 5760, 64.0, kind=sphere.STEREOGRAPHIC)
    pinhole = sphere.perspective_view(20.0, -72.0, 80.0, 5760, 64.0)
    assert stereo.focal_px == pytest.approx(pinhole.focal_px, rel=1e-3)
    assert stereo.fov_deg == pytest.approx(80.0, abs=0.1) and stereo.vertical_fov_deg == pytest.approx(64.0, abs=0.1)
    assert stereo.width * stereo.height < 0.82 * pinhole.width * pinhole.height
    angle = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    for u, v in ((stereo.width / 2, stereo.height / 2), (40.0, 60.0), (stereo.width - 5.0, stereo.height / 2)):
        centre = sphere.view_pixel_to_direction(stereo, np.array(u), np.array(v))
        right = np.cross(centre, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, centre)
        radius = math.radians(0.5)
        ring = np.cos(radius) * centre + np.sin(radius) * (np.cos(angle)[:, None] * right + np.sin(angle)[:, None] * up)
        ring_u, ring_v, valid = sphere.direction_to_view_pixel(stereo, ring)
        distances = np.hypot(ring_u - ring_u.mean(), ring_v - ring_v.mean())
        assert valid.all() and distances.std() / distances.mean() < 0.01   # a circle, not an ellipse
        off_axis = sphere.angular_distance_deg(centre, stereo.rotation[:, 2])
        expected = radius * stereo.focal_px / math.cos(math.radians(off_axis) / 2) ** 2
        assert distances.mean() == pytest.approx(expected, rel=0.01)


def test_stereographic_margin_is_the_angle_to_the_view_border():
    """view_margin_deg against brute force: the nearest of many points along the border."""
    view = sphere.perspective_view(-60.0, 72.0, 80.0, 5760, 64.0, kind=sphere.STEREOGRAPHIC)
    side = np.linspace(0, 1, 2000)
    border_u = np.concatenate([side * view.width, side * view.width, np.zeros_like(side), np.full_like(side, view.width)])
    border_v = np.concatenate([np.zeros_like(side), np.full_like(side, view.height), side * view.height,
                               side * view.height])
    border = sphere.view_pixel_to_direction(view, border_u, border_v)
    rng = np.random.default_rng(1)
    inside = sphere.view_pixel_to_direction(view, rng.uniform(0, view.width, 300), rng.uniform(0, view.height, 300))
    brute = np.degrees(np.arccos(np.clip(inside @ border.T, -1, 1))).min(axis=1)
    margin = sphere.view_margin_deg(view, inside)
    assert (margin >= 0).all()
    assert (margin <= brute + 0.01).all()   # a lower bound, as for perspective views
    assert np.median(brute - margin) < 0.05   # and tight but near the corners
    outside = sphere.yaw_pitch_to_direction(np.radians([-60.0, 120.0]), np.radians([30.0, 72.0]))
    assert (sphere.view_margin_deg(view, outside) < 0).all()
