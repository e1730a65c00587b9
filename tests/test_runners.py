"""The same graph builds for cloud runners; validated without submitting anything."""

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from apache_beam.runners.portability.portable_runner import PortableRunner

from pii_blur import cli, pipeline


def build_graph(argv):
    args, runner = cli.parse_args(argv)
    beam_args = runner.beam_args
    options = PipelineOptions(beam_args)
    graph = beam.Pipeline(options=options)
    pipeline.build(graph, args)
    return graph, options, beam_args


def transform_names(graph):
    return {t.unique_name for t in graph.to_runner_api().components.transforms.values()}


def test_dataflow_job_is_built_and_validated_without_submitting():
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")
    graph, options, beam_args = build_graph([
        "gs://photos/in", "gs://photos/blurred", "--runner=DataflowRunner", "--project=pii-blur-test",
        "--region=europe-west1", "--temp_location=gs://pii-blur-test/tmp", "--job_name=pii-blur-dry-run",
        "--setup_file=./setup.py", "--no_auth", "--dry_run=True", "--sdk_location=container"])
    assert beam_args[0] == "--runner=DataflowRunner"              # passed through untouched
    assert {"MatchImages/FanOut", "Anonymize/ReadImages/Read", "Anonymize/DetectPII/Detect onnx-centerface",
            "WriteReport/Count"} <= transform_names(graph)
    result = graph.run()
    assert result.state == "DONE"                                 # dry run: built, validated, not sent
    assert result.job.proto.name == "pii-blur-dry-run"


@pytest.mark.parametrize("runner", ["PortableRunner", "FlinkRunner", "SparkRunner"])
def test_portable_runner_options_validate(runner):
    graph, options, beam_args = build_graph([
        "s3://photos/in", "s3://photos/blurred", f"--runner={runner}", "--job_endpoint=localhost:8099",
        "--environment_type=PROCESS", '--environment_config={"command": "/opt/apache/beam/boot"}'])
    assert beam_args[0] == f"--runner={runner}"
    assert PipelineOptionsValidator(options, PortableRunner()).validate() == []
    assert options.view_as(PortableOptions).job_endpoint == "localhost:8099"
    proto = graph.to_runner_api()
    assert "Anonymize/WriteImages/Write" in {t.unique_name for t in proto.components.transforms.values()}
