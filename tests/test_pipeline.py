"""The whole Beam pipeline on real images, with TestPipeline and assert_that."""

import json
import os

import apache_beam as beam
import cv2
import fsspec
import numpy as np
import pytest
import skimage.data
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from conftest import ASTRONAUT_FACE_BOX, high_frequency_energy, jpeg_bytes, render_car_with_plate
from pii_blur import imageio, pipeline
from pii_blur.pipeline import runners
from pii_blur.config import BlurConfig
from pii_blur.storage import list_inputs
from pii_blur.transforms.match import balanced_groups
from pii_blur.report_files import read_summary
from pii_blur.types import InputFile

LOCAL = ["--runner=FnApiRunner", "--direct_running_mode=in_memory"]


def run_pipeline(input_spec, output, check=None):
    args = pipeline.RunArgs(input=input_spec, output=output, report=output.rstrip("/") + "/report.jsonl",
                            config=BlurConfig(threads=1), started_at=0.0)
    with TestPipeline(options=PipelineOptions(LOCAL), blocking=True) as p:
        reports = pipeline.build(p, args)
        if check is not None:
            check(reports)
    return args.report


def status_of(report):
    return os.path.basename(report.path), report.status.value


@pytest.fixture
def photo_folder(tmp_path, astronaut):
    folder = tmp_path / "in"
    (folder / "street").mkdir(parents=True)
    (folder / "face.jpg").write_bytes(jpeg_bytes(astronaut))
    (folder / "street" / "rocket.jpg").write_bytes(jpeg_bytes(skimage.data.rocket()))
    Image.fromarray(render_car_with_plate()).save(folder / "street" / "car.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg_bytes(astronaut)[:5000])
    (folder / "notes.jpg").write_bytes(b"not a picture at all, despite the name")
    return folder


def test_every_input_gets_the_right_status(tmp_path, photo_folder):
    expected = [("face.jpg", "blurred"), ("rocket.jpg", "copied"), ("car.png", "blurred"),
                ("empty.jpg", "failed"), ("truncated.jpg", "failed"), ("notes.jpg", "skipped")]

    def check(reports):
        from apache_beam import Map
        assert_that(reports | Map(status_of), equal_to(expected))

    out = tmp_path / "out"
    report = run_pipeline(str(photo_folder), str(out), check)
    outputs = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and ".pii-blur" not in p.parts)
    # Only processed images reach the output; failed and skipped ones do not.
    assert outputs == ["face.jpg", "report.jsonl", "street/car.png", "street/rocket.jpg"]
    lines = [json.loads(line) for line in open(report)]
    reasons = {os.path.basename(r["path"]): r["reason"] for r in lines[:-1]}
    assert "empty" in reasons["empty.jpg"] and "truncated" in reasons["truncated.jpg"]
    assert lines[-1]["summary"] and lines[-1]["failed"] == 2 and lines[-1]["blurred"] == 2


def test_untouched_photo_is_a_byte_identical_copy(tmp_path, photo_folder):
    run_pipeline(str(photo_folder), str(tmp_path / "out"))
    assert (tmp_path / "out/street/rocket.jpg").read_bytes() == (photo_folder / "street/rocket.jpg").read_bytes()


def test_face_and_plate_are_blurred_in_the_output(tmp_path, photo_folder, astronaut):
    report = run_pipeline(str(photo_folder), str(tmp_path / "out"))
    face = np.asarray(Image.open(tmp_path / "out/face.jpg"))
    assert high_frequency_energy(face, ASTRONAUT_FACE_BOX) < 0.2 * high_frequency_energy(astronaut, ASTRONAUT_FACE_BOX)
    car = np.asarray(Image.open(tmp_path / "out/street/car.png"))
    plate_box = (290, 300, 430, 340)
    assert high_frequency_energy(car, plate_box) < 0.2 * high_frequency_energy(render_car_with_plate(), plate_box)
    detections = {os.path.basename(r["path"]): r["detections"] for r in map(json.loads, open(report)) if "path" in r}
    assert [d["label"] for d in detections["face.jpg"]] == ["face"]
    assert [d["label"] for d in detections["car.png"]] == ["plate"]


def test_rotated_photo_is_blurred_where_the_face_is_stored(tmp_path, astronaut):
    """EXIF orientation 6: pixels stored turned 90 degrees anticlockwise; the face must still be found."""
    stored = np.ascontiguousarray(np.rot90(astronaut, 1))   # displayed upright after a clockwise turn
    exif = Image.Exif()
    exif[imageio.EXIF_ORIENTATION_TAG] = 6
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "rotated.jpg").write_bytes(jpeg_bytes(stored, exif=exif.tobytes()))
    report = run_pipeline(str(folder), str(tmp_path / "out"))
    [record] = [json.loads(line) for line in open(report)][:-1]
    x1, y1, x2, y2 = record["detections"][0]["box"]
    # The upright face box (175, 54, 275, 180) in stored (rotated) pixels.
    assert abs(x1 - 54) < 15 and abs(x2 - 180) < 15 and abs(y1 - (512 - 275)) < 15 and abs(y2 - (512 - 175)) < 15
    out = Image.open(tmp_path / "out/rotated.jpg")
    assert out.getexif()[imageio.EXIF_ORIENTATION_TAG] == 6
    assert high_frequency_energy(np.asarray(out), (x1, y1, x2, y2)) < 0.2 * high_frequency_energy(stored, (x1, y1, x2, y2))


def test_memory_filesystem_round_trip(astronaut):
    fs = fsspec.filesystem("memory")
    fs.pipe("/pii-in/a/face.jpg", jpeg_bytes(astronaut))
    fs.pipe("/pii-in/b/rocket.jpg", jpeg_bytes(skimage.data.rocket()))
    report = run_pipeline("memory://pii-in", "memory://pii-out")
    assert read_summary(report)["blurred"] == 1 and read_summary(report)["copied"] == 1
    assert fs.cat("/pii-out/b/rocket.jpg") == fs.cat("/pii-in/b/rocket.jpg")
    assert fs.exists("/pii-out/a/face.jpg")


def test_balanced_groups_split_bytes_evenly_and_keep_every_file():
    sizes = [9, 7, 6, 5, 4, 3, 3, 2, 1, None]
    files = [InputFile(url=f"/in/{i}.jpg", relative_path=f"{i}.jpg", output_url=f"/out/{i}.jpg", size=size)
             for i, size in enumerate(sizes)]
    groups = balanced_groups(files, 2)
    assert sorted(f.url for g in groups for f in g) == sorted(f.url for f in files)
    loads = [sum(f.size or 1 for f in g) for g in groups]
    assert abs(loads[0] - loads[1]) <= 1
    assert balanced_groups(files, 2) == groups                 # deterministic
    assert [len(g) for g in balanced_groups(files[:1], 3)] == [1, 0, 0]


def test_balanced_groups_weigh_local_images_by_the_pixels_to_search(tmp_path):
    """A small panorama, upscaled for its search, outweighs photos of many more bytes."""
    pano = cv2.resize(skimage.data.astronaut(), (1024, 512))
    (tmp_path / "pano.jpg").write_bytes(jpeg_bytes(cv2.GaussianBlur(pano, (0, 0), 8)))
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    for index in range(3):
        Image.fromarray(noise).save(tmp_path / f"photo{index}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    files = list_inputs(str(tmp_path), str(tmp_path / "out"))
    by_name = {os.path.basename(f.url): f for f in files}
    assert by_name["pano.jpg"].size < by_name["photo0.png"].size / 5
    groups = [sorted(os.path.basename(f.url) for f in group) for group in balanced_groups(files, 2)]
    assert ["pano.jpg"] in groups
    assert sorted(name for group in groups for name in group) == sorted(by_name)


def test_pipeline_on_balanced_shares_reports_every_input_once(tmp_path):
    """Two workers, the inputs listed at launch and split into two shares: each worker takes one."""
    src = tmp_path / "in"
    src.mkdir()
    for index in range(5):
        (src / f"{index}.jpg").write_bytes(jpeg_bytes(skimage.data.astronaut()))
    out = tmp_path / "out"
    listed = tuple(list_inputs(str(src), str(out)))
    args = pipeline.RunArgs(input=str(src), output=str(out), report=str(out / "report.jsonl"),
                            config=BlurConfig(threads=1), started_at=0.0, workers=2, inputs=listed, shares=2)
    options = PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                               "--direct_num_workers=2"])
    with TestPipeline(options=options, blocking=True) as p:
        reports = pipeline.build(p, args)
        assert_that(reports | beam.Map(lambda r: (os.path.basename(r.path), r.status.value)),
                    equal_to([(f"{i}.jpg", "blurred") for i in range(5)]))
    assert len({json.loads(line)["worker"] for line in open(out / "report.jsonl").readlines()[:-1]}) == 2


def test_two_worker_threads_write_the_same_files_as_one_worker(tmp_path, astronaut):
    """Beam's multi_threading mode: two workers share one process, its models and jpeglib;
    every output must be byte-identical to a one-worker run's."""
    src = tmp_path / "in"
    src.mkdir()
    for index in range(6):
        image = np.ascontiguousarray(np.roll(astronaut, 40 * index, axis=1))
        (src / f"{index}.jpg").write_bytes(jpeg_bytes(image))
    (src / "rocket.jpg").write_bytes(jpeg_bytes(skimage.data.rocket()))
    outputs = {}
    for mode, workers in (("in_memory", 1), ("multi_threading", 2)):
        out = tmp_path / mode
        listed = tuple(list_inputs(str(src), str(out)))
        args = pipeline.RunArgs(input=str(src), output=str(out), report=str(out / "report.jsonl"),
                                config=BlurConfig(threads=1), started_at=0.0, workers=workers, inputs=listed,
                                shares=workers)
        options = PipelineOptions([f"--runner={runners.LOCAL_RUNNER}", f"--direct_running_mode={mode}",
                                   f"--direct_num_workers={workers}"])
        with TestPipeline(options=options, blocking=True) as p:
            reports = pipeline.build(p, args)
            assert_that(reports | beam.Map(status_of),
                        equal_to([(f"{i}.jpg", "blurred") for i in range(6)] + [("rocket.jpg", "copied")]))
        outputs[mode] = {name: (out / name).read_bytes() for name in sorted(os.listdir(src))}
    assert outputs["multi_threading"] == outputs["in_memory"]
