"""A rendered 360 panorama through the whole pipeline: found all over the sphere, blurred, metadata kept."""

import json
import subprocess

import cv2
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from PIL import Image

from conftest import add_metadata
from test_sphere import PANO_H, PANO_W, astronaut_pano
from pii_blur import pipeline, sphere
from pii_blur.config import BlurConfig


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
    assert 4 <= len(detections) <= 5                                  # the 4 faces; at most one spurious extra
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
