"""A rendered 360 panorama through the whole pipeline: found all over the sphere, blurred, metadata kept."""

import json
import math
import subprocess

import cv2
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from PIL import Image

from conftest import add_metadata, jpeg_bytes, render_car_with_plate
from test_sphere import PANO_H, PANO_W, astronaut_pano
from pii_blur import anonymize, imageio, pipeline, sphere
from pii_blur.config import BlurConfig
from pii_blur.models.base import INPUT_MULTIPLE, Detector
from pii_blur.types import Detection


def run(source, output, projection):
    args = pipeline.RunArgs(str(source), str(output), str(output) + "/report.jsonl",
                            BlurConfig(classes=("face",), threads=2, projection=projection), 0.0)
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]), blocking=True) as p:
        pipeline.build(p, args)
    return [json.loads(line) for line in open(args.report)][0]


def energy(image, mask):
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[mask].mean())


def test_panorama_faces_found_at_the_seam_and_poles_and_blurred(tmp_path):
    pano, faces = astronaut_pano()
    source = tmp_path / "in"
    source.mkdir()
    Image.fromarray(pano).save(source / "pano.jpg", quality=92)
    add_metadata(str(source / "pano.jpg"))      # includes XMP GPano ProjectionType=equirectangular and GPS

    record = run(source, tmp_path / "out", "auto")
    assert record["projection"] == "equirectangular" and record["status"] == "blurred"
    detections = record["detections"]
    # The 4 faces; at most two spurious extras (int8 CenterFace, the default, at its lower threshold
    # also blurs a 7x9 px speck near -45 degrees as a small object, scoring 0.088).
    assert 4 <= len(detections) <= 6
    pitches = sorted(d["pitch_deg"] for d in detections)
    assert pitches[0] < -50 and pitches[-1] > 75                      # both polar faces (at about -58 and +82)
    seam = [d for d in detections if len(d["boxes"]) == 2 and abs(d["pitch_deg"]) < 30]
    assert len(seam) == 1
    assert {seam[0]["boxes"][0][2], seam[0]["boxes"][1][0]} == {PANO_W, 0}   # one box ends at the edge, one starts at 0

    out = np.asarray(Image.open(tmp_path / "out/pano.jpg").convert("RGB"))
    for name, footprint in faces.items():
        face = sphere.blur_mask(PANO_H, PANO_W, [sphere.sphere_detection("face", [footprint], PANO_W, PANO_H)]) > 0.5
        assert energy(out, face) < 0.25 * energy(pano, face), name

    tags = json.loads(subprocess.run(["exiftool", "-j", "-G1", "-XMP-GPano:all", "-GPS:all", str(tmp_path / "out/pano.jpg")],
                                     capture_output=True, text=True, check=True).stdout)[0]
    assert tags["XMP-GPano:ProjectionType"] == "equirectangular" and "51 deg" in tags["GPS:GPSLatitude"]


def test_perspective_mode_is_the_flat_behaviour_and_misses_the_poles(tmp_path):
    pano, _ = astronaut_pano()
    source = tmp_path / "in"
    source.mkdir()
    Image.fromarray(pano).save(source / "pano.png")
    record = run(source, tmp_path / "out", "perspective")
    assert record["projection"] == "perspective"
    assert all("pitch_deg" not in d for d in record["detections"])
    # The flat detector misses the face at +82 degrees (within 0.1 of the top edge).
    assert not any(d["box"][1] < 0.1 * PANO_H for d in record["detections"])


@pytest.mark.parametrize("width, band_px_per_deg", [
    (1400, 12.0),       # 3.9 px/deg: upscaled to 12
    (4096, 12.0),       # 11.4 px/deg: upscaled to 12
    (5760, 16.0),       # its own 16 px/deg
    (11520, 32.0),      # 8K: its own 32 px/deg, never less
])
def test_panoramas_are_searched_at_no_less_than_native_resolution(width, band_px_per_deg):
    """Faces and plates alike (every detector searches the same views)."""
    search = anonymize.PanoSearch()
    views = anonymize.pano_views(width, width // 2, search)
    band = [view for view in views if view.kind == sphere.EQUIRECT and view.fov_deg < 360]   # the fine tiles
    rings = [view for view in views if view.kind == sphere.PERSPECTIVE]
    assert band and rings                                       # plates too are searched at the poles
    for view in band:
        assert math.radians(1) * view.focal_px == pytest.approx(band_px_per_deg, rel=0.01)
    for view in rings:   # at their centre
        assert math.radians(1) * view.focal_px >= search.ring_resolution * band_px_per_deg * 0.99
    assert sphere.coverage_margin_deg(views) >= 10.0


class _SeesWholeViews(Detector):
    """Finds one object filling the top-left quarter of each image it is given; records their sizes."""

    def __init__(self, labels):
        self.labels = labels
        self.sizes = []

    def detect(self, images_rgb, rescale=True):
        self.sizes = [image.shape[:2] for image in images_rgb]
        return [[Detection(self.labels[0], 0.9, (0.0, 0.0, w / 2, h / 2))] for h, w in self.sizes]


def test_plates_are_searched_at_the_plate_resolution_and_faces_at_the_band_resolution():
    search = anonymize.PanoSearch()
    plan = anonymize.pano_views(5760, 2880, search)
    views = anonymize.Views("equirectangular", [np.zeros((v.height, v.width, 3), np.uint8) for v in plan], tuple(plan))
    for labels, most_px_per_deg in ((("plate",), search.plate_px_per_deg), (("face",), math.inf)):
        detector = _SeesWholeViews(labels)
        found = anonymize.detect_views(detector, views, search)
        for view, size, per_view in zip(plan, detector.sizes, found):
            own_px_per_deg = math.radians(view.focal_px)
            if own_px_per_deg > most_px_per_deg:
                # shrunk to sides the network takes as they are: at most one INPUT_MULTIPLE more
                assert size[0] % INPUT_MULTIPLE == 0 and size[1] % INPUT_MULTIPLE == 0
                exact_width = view.width * most_px_per_deg / own_px_per_deg
                assert exact_width <= size[1] < exact_width + INPUT_MULTIPLE
            else:
                assert size == (view.height, view.width)
            # boxes come back in the view's own pixels
            assert per_view[0].box == pytest.approx((0, 0, view.width / 2, view.height / 2), abs=1)


def test_a_plate_far_below_the_horizon_is_found_and_blurred(plate_detector, monkeypatch):
    """A plate seen from a camera on a car roof, at -65 degrees pitch."""
    # At the panorama's own 5.7 px/deg rather than upscaled to 12: the plate is large enough, the test 4x cheaper.
    monkeypatch.setattr(anonymize, "PANO_SEARCH", anonymize.PanoSearch(min_px_per_deg=0.0))
    monkeypatch.delenv(anonymize.PANO_SEARCH_ENV, raising=False)
    car = render_car_with_plate("KT52 XRW")
    assert any(d.score >= plate_detector.threshold for d in plate_detector.detect([car])[0])   # flat first
    pano = np.full((PANO_H, PANO_W, 3), (120, 130, 110), np.uint8)
    view = sphere.View(40.0, -59.0, 50.0, car.shape[1], car.shape[0])
    pano = sphere.paste_view(pano, car, view)
    plate = sphere.Footprint(view, (290.0, 300.0, 430.0, 340.0), 1.0)   # where render_car_with_plate puts it
    truth = sphere.sphere_detection("plate", [plate], PANO_W, PANO_H)
    assert -67 < truth.pitch_deg < -63

    image = imageio.decode(jpeg_bytes(pano, quality=95))
    found = anonymize.detect(image, [plate_detector], {"plate"}, "equirectangular")
    assert len(found.to_blur) == 1
    detection = found.on_sphere[0]
    assert detection.label == "plate"
    assert abs(detection.pitch_deg - truth.pitch_deg) < 2 and abs(detection.yaw_deg - truth.yaw_deg) < 4

    blurred = sphere.blur_on_sphere(image.pixels, found.on_sphere)
    mask = sphere.blur_mask(PANO_H, PANO_W, [truth]) > 0.5
    assert energy(blurred, mask) < 0.25 * energy(image.pixels, mask)


@pytest.mark.parametrize("pitch_deg, height_deg, factor", [
    (10.0, 3.0, 1.0),     # in the band, 48 px tall at 16 px/deg
    (70.0, 3.0, 0.8),     # beyond the band: polar_threshold
    (10.0, 0.5, 0.5),     # 8 px tall: small_threshold
    (70.0, 0.5, 0.5),     # both: the lower
])
def test_objects_beyond_the_band_and_small_ones_are_blurred_from_a_lower_score(pitch_deg, height_deg, factor):
    search = anonymize.PanoSearch()
    width = 5760
    view = sphere.perspective_view(0.0, pitch_deg, 60.0, width)
    half = view.focal_px * math.tan(math.radians(height_deg) / 2)
    box = (view.width / 2 - half, view.height / 2 - half, view.width / 2 + half, view.height / 2 + half)
    detection = sphere.sphere_detection("face", [sphere.Footprint(view, box, 0.3)], width, width // 2)
    assert anonymize._sphere_threshold(detection, 0.2, search, width) == pytest.approx(0.2 * factor)
