"""The pipeline on a real dask.distributed cluster (Beam's DaskRunner) on 127.0.0.1."""

import json
import subprocess
import sys

import apache_beam as beam
import cv2
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
import skimage.data
from PIL import Image

from conftest import jpeg_bytes, render_car_with_plate
from pii_blur.pipeline import runners

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as local_cluster:
        yield local_cluster


@pytest.fixture
def eight_photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut = skimage.data.astronaut()
    for index in range(4):
        scaled = cv2.resize(astronaut, None, fx=0.6 + 0.2 * index, fy=0.6 + 0.2 * index)
        (folder / f"face-{index}.jpg").write_bytes(jpeg_bytes(scaled))
    (folder / "rocket.jpg").write_bytes(jpeg_bytes(skimage.data.rocket()))
    (folder / "hubble.jpg").write_bytes(jpeg_bytes(skimage.data.hubble_deep_field()))
    Image.fromarray(render_car_with_plate()).save(folder / "car.png")
    (folder / "broken.jpg").write_bytes(jpeg_bytes(astronaut)[:4000])
    return folder


def run_cli(source, output, *extra):
    result = subprocess.run([sys.executable, "-m", "pii_blur.cli", str(source), str(output), "--workers", "2",
                             *extra], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]      # broken.jpg fails, nothing else
    return {json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line)
            for line in (output / "pii-blur-report.jsonl").read_text().splitlines()[:-1]}


def test_dask_cluster_matches_the_local_runner_and_uses_both_workers(tmp_path, eight_photos, cluster):
    on_dask = run_cli(eight_photos, tmp_path / "dask", "--runner", "dask", "--dask-address", cluster.scheduler_address)
    local = run_cli(eight_photos, tmp_path / "local")
    assert {name: r["status"] for name, r in on_dask.items()} == {name: r["status"] for name, r in local.items()}
    blurred = {name for name, r in on_dask.items() if r["status"] == "blurred"}
    # The 4 faces and the car; int8 CenterFace (the default) also scores a galaxy of hubble.jpg 0.21.
    assert blurred - {"hubble.jpg"} == {"face-0.jpg", "face-1.jpg", "face-2.jpg", "face-3.jpg", "car.png"}
    for name, record in on_dask.items():
        mine, theirs = record["detections"], local[name]["detections"]
        assert [d["label"] for d in mine] == [d["label"] for d in theirs], name
        for a, b in zip(mine, theirs):
            assert max(abs(x - y) for x, y in zip(a["box"], b["box"])) <= 2 and abs(a["score"] - b["score"]) < 0.01
    workers = {r["worker"] for r in on_dask.values()}
    assert len(workers) >= 2, workers       # detection work really spread over two processes
    for name in sorted({"rocket.jpg", "hubble.jpg"} - blurred):     # untouched inputs are copied as they are
        assert (tmp_path / "dask" / name).read_bytes() == (eight_photos / name).read_bytes()
    assert not (tmp_path / "dask" / "broken.jpg").exists()


def test_dask_local_cluster_mode_starts_and_stops_its_own_cluster(tmp_path, eight_photos):
    report = run_cli(eight_photos, tmp_path / "out", "--runner", "dask")
    assert len(report) == 8 and len({r["worker"] for r in report.values()}) >= 2


class _SplitOddEven(beam.DoFn):
    def process(self, number):
        yield number if number % 2 == 0 else beam.pvalue.TaggedOutput("odd", number)


def _dask_options(cluster) -> PipelineOptions:
    return PipelineOptions([f"--runner={runners.DASK_RUNNER}", f"--dask_client_address={cluster.scheduler_address}"])


def test_dask_sends_every_tagged_output_to_every_consumer(cluster, tmp_path):
    """One of the two reasons the Dask runner gets the steps in one DoFn
    (transforms.anonymize.on_dask): with Beam 2.77's DaskRunner, the consumer
    of the main output also receives the elements tagged `odd`. If this test
    fails, Beam has fixed it."""
    evens = tmp_path / "evens"
    with beam.Pipeline(options=_dask_options(cluster)) as p:
        split = p | beam.Create(list(range(6))) | beam.ParDo(_SplitOddEven()).with_outputs("odd", main="even")
        _ = split.even | beam.Map(_append_to, str(evens))
    received = sorted(int(line) for line in evens.read_text().split())
    assert received != [0, 2, 4] and set(received) & {1, 3, 5}


def test_dask_computes_only_one_consumer_of_a_fan_out(cluster, tmp_path):
    """The other reason: of two consumers of one PCollection, one never runs."""
    with beam.Pipeline(options=_dask_options(cluster)) as p:
        numbers = p | beam.Create([1, 2, 3]) | "Add" >> beam.Map(lambda n: n + 10)
        _ = numbers | "A" >> beam.Map(_append_to, str(tmp_path / "a"))
        _ = numbers | "B" >> beam.Map(_append_to, str(tmp_path / "b"))
    assert [(tmp_path / name).exists() for name in ("a", "b")].count(True) == 1


def _append_to(number, path):
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{number}\n")
