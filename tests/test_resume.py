"""Reruns skip finished work; a run killed with kill -9 completes on rerun."""

import json
import os
import signal
import subprocess
import sys
import time

import skimage.data
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from conftest import jpeg_bytes
from test_pipeline import run_pipeline
from pii_blur import pipeline
from pii_blur.config import BlurConfig


def report_lines(path):
    return [json.loads(line) for line in open(path)]


def test_rerun_skips_finished_inputs_and_redoes_changed_ones(tmp_path, astronaut):
    source = tmp_path / "in"
    source.mkdir()
    (source / "face.jpg").write_bytes(jpeg_bytes(astronaut))
    (source / "rocket.jpg").write_bytes(jpeg_bytes(skimage.data.rocket()))
    out = tmp_path / "out"
    first = report_lines(run_pipeline(str(source), str(out)))
    assert [r["resumed"] for r in first[:-1]] == [False, False]

    second = report_lines(run_pipeline(str(source), str(out)))
    assert [(r["status"], r["resumed"]) for r in second[:-1]] == [("blurred", True), ("copied", True)]
    assert second[0]["detections"] == first[0]["detections"]      # the report stays complete

    (source / "rocket.jpg").write_bytes(jpeg_bytes(skimage.data.rocket(), quality=80))
    os.utime(source / "rocket.jpg", (time.time() + 5, time.time() + 5))
    third = report_lines(run_pipeline(str(source), str(out)))
    assert [r["resumed"] for r in third[:-1]] == [True, False]
    assert (out / "rocket.jpg").read_bytes() == (source / "rocket.jpg").read_bytes()


def test_force_and_new_settings_redo_everything(tmp_path, astronaut):
    source = tmp_path / "in"
    source.mkdir()
    (source / "face.jpg").write_bytes(jpeg_bytes(astronaut))
    out = str(tmp_path / "out")
    run_pipeline(str(source), out)
    for config in (BlurConfig(threads=1, force=True), BlurConfig(threads=1, min_probability=0.5)):
        args = pipeline.RunArgs(str(source), out, out + "/report.jsonl", config, 0.0)
        with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]), blocking=True) as p:
            pipeline.build(p, args)
        assert [r["resumed"] for r in report_lines(args.report)[:-1]] == [False]


def test_killed_run_completes_on_rerun_without_partial_files(tmp_path, astronaut):
    source = tmp_path / "in"
    source.mkdir()
    for index in range(8):
        image = skimage.data.rocket() if index % 2 else astronaut
        (source / f"photo-{index}.jpg").write_bytes(jpeg_bytes(image, quality=80 + index))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pii_blur.cli", str(source), str(out), "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("photo-*.jpg"))) < 2:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)          # the whole process group, workers included
    process.wait()
    finished_before = len(list(out.glob("photo-*.jpg")))
    assert 2 <= finished_before < 8, "kill came too late to test anything"
    assert not (out / "pii-blur-report.jsonl").exists()

    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = report_lines(out / "pii-blur-report.jsonl")
    assert lines[-1]["files"] == 8 and lines[-1]["failed"] == 0
    assert sum(r["resumed"] for r in lines[:-1]) >= finished_before - 1
    assert sorted(p.name for p in out.glob("photo-*.jpg")) == [f"photo-{i}.jpg" for i in range(8)]
    assert not [p for p in out.rglob("*") if ".pii-blur-tmp-" in p.name]
    for index in range(1, 8, 2):    # rocket photos: byte-identical copies, so complete
        assert (out / f"photo-{index}.jpg").read_bytes() == (source / f"photo-{index}.jpg").read_bytes()
