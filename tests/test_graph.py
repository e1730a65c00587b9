"""The card's graph: its steps by name, Beam's metrics, and the steps composed as a library."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners import pipeline_context
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from conftest import jpeg_bytes
from pii_blur import pipeline, storage
from pii_blur.config import REPORT_NAME, BlurConfig
from pii_blur.transforms import DetectPII, MergeDetections, ProjectViews, ReadImages
from pii_blur.transforms.elements import DetectedInput, StagedCoder

LOCAL = ["--runner=FnApiRunner", "--direct_running_mode=in_memory"]
CARD = ["MatchImages", "ReadImages", "ProjectViews", "DetectPII", "MergeDetections", "RouteImages", "CopyUntouched",
        "BlurImages", "WriteImages", "WriteReport"]


def three_inputs(tmp_path, astronaut, rocket) -> str:
    source = tmp_path / "in"
    source.mkdir()
    (source / "face.jpg").write_bytes(jpeg_bytes(astronaut))
    (source / "rocket.jpg").write_bytes(jpeg_bytes(rocket))
    (source / "notes.txt").write_text("not a photo")
    return str(source)


def test_the_graph_has_the_cards_steps(tmp_path):
    args = pipeline.RunArgs(input=str(tmp_path), output=str(tmp_path / "out"), report=str(tmp_path / "r.jsonl"),
                            config=BlurConfig(classes=("face",)), started_at=time.time())
    p = beam.Pipeline(options=PipelineOptions(LOCAL))
    pipeline.build(p, args)
    names = [t.unique_name for t in p.to_runner_api().components.transforms.values()]
    for step in CARD:
        assert any(name == step or name.endswith("/" + step) for name in names), step


def test_every_collection_that_carries_pixels_is_sized_without_pickling(tmp_path):
    """Beam samples element sizes through each PCollection's coder: any coder but StagedCoder
    would pickle a sampled panorama and its views whole (seconds per panorama)."""
    args = pipeline.RunArgs(input=str(tmp_path), output=str(tmp_path / "out"), report=str(tmp_path / "r.jsonl"),
                            config=BlurConfig(), started_at=time.time())
    p = beam.Pipeline(options=PipelineOptions(LOCAL))
    pipeline.build(p, args)
    components = p.to_runner_api().components
    context = pipeline_context.PipelineContext(components)

    def sized_by_staged_coder(coder) -> bool:
        return isinstance(coder, StagedCoder) or any(map(sized_by_staged_coder, coder._get_component_coders()))

    carrying = [c for c in components.pcollections.values()
                if any(f"/{step}/" in c.unique_name for step in ("ReadImages", "ProjectViews", "DetectPII",
                                                                 "MergeDetections", "RouteImages", "BlurImages"))
                and not any(tag in c.unique_name for tag in ("Dead letters", "Failed", ".bad", ".done"))]
    assert len(carrying) >= 10
    for collection in carrying:
        assert sized_by_staged_coder(context.coders.get_by_id(collection.coder_id)), collection.unique_name


def test_metrics_count_each_status_and_class(tmp_path, astronaut):
    import skimage.data

    source = three_inputs(tmp_path, astronaut, skimage.data.rocket())
    output = str(tmp_path / "out")
    args = pipeline.RunArgs(input=source, output=output, report=storage.join_url(output, REPORT_NAME),
                            config=BlurConfig(classes=("face",), threads=1), started_at=time.time())
    p = beam.Pipeline(options=PipelineOptions(LOCAL))
    pipeline.build(p, args)
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace("pii_blur"))["counters"]}
    assert {k: counters.get(k) for k in ("blurred", "copied", "skipped", "detections_face")} \
        == {"blurred": 1, "copied": 1, "skipped": 1, "detections_face": 1}


def _detections_json(element) -> str:
    return json.dumps({"path": element.decoded.input.relative_path,
                       "faces": [d.to_json() for d in element.found.to_blur]})


def test_read_project_detect_as_a_library_writes_detections_without_blurring(tmp_path, astronaut):
    """A user's own pipeline: find faces and keep the boxes, write no image."""
    import skimage.data

    source = three_inputs(tmp_path, astronaut, skimage.data.rocket())
    config = BlurConfig(classes=("face",), threads=1)
    with TestPipeline(options=PipelineOptions(LOCAL)) as p:
        found = (p
                 | beam.Create(storage.list_inputs(source, str(tmp_path / "unused")))
                 | ReadImages(config) | ProjectViews() | DetectPII(config) | MergeDetections(config.classes)
                 | beam.Filter(lambda element: isinstance(element, DetectedInput)))
        lines = found | beam.Map(_detections_json)
        _ = lines | beam.io.WriteToText(str(tmp_path / "detections"), file_name_suffix=".jsonl")
        assert_that(lines | beam.Map(lambda line: (json.loads(line)["path"], len(json.loads(line)["faces"]))),
                    equal_to([("face.jpg", 1), ("rocket.jpg", 0)]))
    assert not (tmp_path / "unused").exists()


def test_the_graph_starts_without_importing_torch():
    """RunInference's module imports torch when it is installed (Beam's ModelManager): 1.5 s
    more start-up per worker process that a run without the ImageAI backend must not pay."""
    pytest.importorskip("torch")
    code = "import sys, pii_blur.pipeline, pii_blur.transforms; print(sorted({'torch', 'scipy'} & set(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"
