import json
import subprocess
import sys

import pytest
import skimage.data

from conftest import jpeg_bytes
from pii_blur import cli
from pii_blur.pipeline import runners


@pytest.fixture(autouse=True)
def input_folders(tmp_path):
    """parse_args refuses a missing INPUT; these tests name tmp_path/in and tmp_path/a."""
    for name in ("in", "a"):
        (tmp_path / name).mkdir(exist_ok=True)


def test_defaults_and_local_runner(tmp_path):
    args, runner = cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--workers", "2"])
    beam_args = runner.beam_args
    assert args.config.classes == ("face", "plate") and args.config.min_probability == 0.4
    assert args.report == str(tmp_path / "out") + "/pii-blur-report.jsonl"
    assert beam_args[:2] == [f"--runner={runners.LOCAL_RUNNER}", "--direct_running_mode=multi_threading"]
    assert "--direct_num_workers=2" in beam_args
    assert args.config.threads == 1 and args.config.progress_dir is None   # the progress folder is made by run()
    assert runner.is_local
    args, _ = cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--workers", "1", "--threads", "2"])
    assert args.config.threads == 2


@pytest.mark.parametrize("workers, mode", [(1, "in_memory"), (2, "multi_threading"), (4, "multi_threading"),
                                           (5, "multi_processing"), (16, "multi_processing")])
def test_local_workers_are_threads_for_a_few_and_processes_for_many(tmp_path, workers, mode):
    _, runner = cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--workers", str(workers)])
    assert runner.beam_args[:2] == [f"--runner={runners.LOCAL_RUNNER}", f"--direct_running_mode={mode}"]
    assert runner.is_in_process == (mode != "multi_processing")
    _, runner = cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--workers", str(workers),
                                "--direct_running_mode=multi_processing"])
    assert runner.beam_args[:2] == [f"--runner={runners.LOCAL_RUNNER}", "--direct_running_mode=multi_processing"]
    assert not runner.is_in_process


def test_direct_runner_is_made_offline_and_other_runners_pass_through(tmp_path):
    _, runner = cli.parse_args([str(tmp_path / "a"), str(tmp_path / "b"), "--runner", "DirectRunner",
                                "--workers", "1"])
    assert runner.beam_args[:2] == [f"--runner={runners.LOCAL_RUNNER}", "--direct_running_mode=in_memory"]
    _, runner = cli.parse_args([str(tmp_path / "a"), "gs://bucket/out", "--runner=DataflowRunner", "--project=p"])
    assert runner.beam_args == ["--runner=DataflowRunner", "--project=p"] and not runner.is_dask
    assert not runner.is_local
    _, runner = cli.parse_args([str(tmp_path / "a"), str(tmp_path / "b"), "--runner", "dask",
                                "--dask-address", "tcp://127.0.0.1:8786"])
    assert runner.is_dask and runner.dask_address == "tcp://127.0.0.1:8786" and not runner.is_local
    assert not runner.is_in_process
    assert runner.beam_args == ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner"]


@pytest.mark.parametrize("argv, message", [
    (["in", "in/out"], "inside"),
    (["in", "in"], "inside"),
    (["in/*.jpg", "in/blurred"], "inside"),
    (["in", "out", "0"], "between 1 and 100"),
    (["in", "out", "101"], "between 1 and 100"),
    (["in", "out", "--threads", "0"], "--threads must be at least 1"),
    (["in", "out", "--classes", "face,unicorn"], "unicorn"),
])
def test_bad_arguments_exit_with_a_message(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_states_every_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"])
    text = capsys.readouterr().out
    for default in ("default: 40", "default: face,plate", "default: OUTPUT/pii-blur-report.jsonl",
                    "default: number of cores", "Default runner: Beam's local FnApiRunner"):
        assert default in text


def test_cli_end_to_end_with_two_worker_processes(tmp_path, astronaut):
    source = tmp_path / "photos"
    (source / "deep" / "er").mkdir(parents=True)
    (source / "face.jpg").write_bytes(jpeg_bytes(astronaut))
    (source / "deep" / "er" / "rocket.jpg").write_bytes(jpeg_bytes(skimage.data.rocket()))
    (source / "broken.jpg").write_bytes(jpeg_bytes(astronaut)[:3000])
    result = subprocess.run([sys.executable, "-m", "pii_blur.cli", str(source), str(tmp_path / "blurred"), "40",
                             "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]     # one file failed
    assert "3 files: 1 copied, 0 cleaned of stale previews, 1 blurred, 0 skipped, 1 failed" in result.stdout
    assert (tmp_path / "blurred/deep/er/rocket.jpg").read_bytes() == (source / "deep/er/rocket.jpg").read_bytes()
    assert (tmp_path / "blurred/face.jpg").exists() and not (tmp_path / "blurred/broken.jpg").exists()
    lines = (tmp_path / "blurred/pii-blur-report.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["files"] == 3
    # A quiet terminal: the failed file and why, nothing from Beam; everything else in the run's log.
    assert result.stderr.splitlines() == [f"WARNING pii_blur: failed: file://{source}/broken.jpg: "
                                          + json.loads(lines[0])["reason"]], result.stderr
    [log] = (tmp_path / "blurred/.pii-blur/logs").iterdir()
    assert "apache_beam" in log.read_text()
    assert not list((tmp_path / "blurred").rglob(".pii-blur-tmp-*"))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_input_that_the_runner_loses_fails_the_run_by_name(tmp_path, workers):
    """Inputs listed at launch that end with no report line (a runner lost them) are named on
    stderr and the run exits with status 3, even though the summary counts no failure."""
    source = tmp_path / "photos"
    source.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (source / name).write_bytes(jpeg_bytes(skimage.data.rocket()))
    script = ("import dataclasses, sys\n"
              "from pii_blur import cli\n"
              "run_beam = cli._run_beam\n"
              "def losing_one(args, beam_args):   # the pipeline never sees the first listed input\n"
              "    run_beam(dataclasses.replace(args, inputs=args.inputs[1:]), beam_args)\n"
              "cli._run_beam = losing_one\n"
              f"sys.exit(cli.main([{str(source)!r}, {str(tmp_path / 'out')!r}, '--workers', {workers!r}]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-2000:]
    assert f"no report line for file://{source}/a.jpg: the runner lost it" in result.stderr
    assert "2 files: 2 copied" in result.stdout


@pytest.mark.parametrize("workers, built_on", [("1", "pii-blur-build-ahead"), ("2", "pii-blur-build-ahead"),
                                               ("5", None)])
def test_in_process_workers_get_the_models_built_while_beam_starts(tmp_path, astronaut, workers, built_on):
    """With its workers in the launcher's process (one, or threads), a run builds each default
    detector once, ahead, on a thread of its own; with worker processes the launcher builds none."""
    source = tmp_path / "photos"
    source.mkdir()
    (source / "face.jpg").write_bytes(jpeg_bytes(astronaut))
    script = ("import sys, threading\n"
              "from pii_blur import cli\n"
              "from pii_blur.models import base\n"
              "build = base._build\n"
              "def counted(name, config):\n"
              "    print('built', name, threading.current_thread().name)\n"
              "    return build(name, config)\n"
              "base._build = counted\n"
              f"code = cli.main([{str(source)!r}, {str(tmp_path / 'out')!r}, '--workers', {workers!r}])\n"
              "print('left', len(base._BUILT_AHEAD))\n"
              "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    built = sorted(line for line in result.stdout.splitlines() if line.startswith("built "))
    if built_on:
        assert built == [f"built onnx-centerface {built_on}", f"built onnx-ppocr-plate {built_on}"]
    else:   # the launcher built none; the worker processes build theirs with the unpatched code
        assert built == []
    assert "left 0" in result.stdout and "1 files: 0 copied, 0 cleaned of stale previews, 1 blurred" in result.stdout


def test_the_terminal_stays_quiet_when_beam_warns_at_import(tmp_path):
    """Without Google's API clients (a plain install) Beam's import warns through the root
    logger, which used to leave a stderr handler there that printed every library's INFO."""
    script = ("import sys; sys.modules['apitools'] = None\n"   # as if not installed: the import raises
              "from pii_blur import cli\n"
              f"sys.exit(cli.main(['@sample', {str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    [log] = (tmp_path / "out/.pii-blur/logs").iterdir()
    assert "INFO pii_blur.plan: planned 4 inputs" in log.read_text()


def test_output_that_is_an_existing_file_is_refused(tmp_path, capsys):
    (tmp_path / "b.jpg").write_bytes(b"x")
    with pytest.raises(SystemExit):
        cli.parse_args([str(tmp_path / "in"), str(tmp_path / "b.jpg")])
    assert "existing file" in capsys.readouterr().err


def test_a_local_run_without_exiftool_is_refused_before_it_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "exiftool is not installed" in capsys.readouterr().err
    _, runner = cli.parse_args([str(tmp_path / "a"), "gs://bucket/out", "--runner=DataflowRunner", "--project=p"])
    assert not runner.is_local   # remote workers carry their own exiftool


def test_max_pixels_reaches_the_config(tmp_path):
    args, _ = cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--max-pixels", "1000"])
    assert args.config.max_pixels == 1000
