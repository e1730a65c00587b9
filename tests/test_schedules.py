"""The worker image, the ready-made schedules and --summary-json: what can be checked without a cluster."""

import configparser
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.data

from conftest import jpeg_bytes
from pii_blur import cli

ROOT = Path(__file__).resolve().parent.parent
SCHEDULES = ROOT / "schedules"
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
sys.path.insert(0, str(SCHEDULES))
import launch  # noqa: E402  (schedules/launch.py)


def pinned_beam() -> str:
    return re.search(r'"apache-beam==([0-9.]+)"', (ROOT / "setup.py").read_text()).group(1)


def test_worker_image_is_beams_sdk_image_at_the_pinned_version():
    dockerfile = (ROOT / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    match = re.fullmatch(r"apache/beam_python3\.(\d+)_sdk:([0-9.]+)", base)
    assert match, base
    assert match.group(2) == pinned_beam()
    minimum = int(re.search(r'python_requires=">=3\.(\d+)"', (ROOT / "setup.py").read_text()).group(1))
    assert int(match.group(1)) >= minimum
    for package in ("libimage-exiftool-perl", "libjpeg-turbo-progs", "libgs-common"):
        assert package in dockerfile
    template = (SCHEDULES / "dataflow" / "Dockerfile").read_text()
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/pii-blur/schedules/launch.py" in template


@pytest.mark.slow
def test_package_installs_into_a_clean_venv_with_its_weights(tmp_path):
    """The wheel the image installs, in a venv of its own: same requirements, weights included."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "pii_blur", source / "pii_blur", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(source)], check=True)
    (wheel,) = (tmp_path / "dist").glob("pii_blur-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True)
    check = ("import importlib.metadata as m, importlib.util, json, pathlib, pii_blur;"
             "folder = pathlib.Path(importlib.util.find_spec('pii_blur').origin).parent;"
             "print(json.dumps({'version': pii_blur.__version__, 'requires': m.requires('pii-blur'),"
             " 'folder': str(folder)}))")
    found = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", check], capture_output=True,
                                      text=True, check=True, cwd=tmp_path).stdout)
    assert found["folder"].startswith(str(venv))
    assert f"apache-beam=={pinned_beam()}" in found["requires"]
    from pii_blur.models.weights import VENDORED_WEIGHTS
    weights = Path(found["folder"]) / "models" / "weights"
    for name, digest in VENDORED_WEIGHTS.items():
        assert hashlib.sha256((weights / name).read_bytes()).hexdigest() == digest, name


@pytest.fixture
def folders(tmp_path):
    """Stand-ins for the schedules' /srv/photos and /srv/blurred."""
    photos, blurred = tmp_path / "photos", tmp_path / "blurred"
    photos.mkdir()
    return {"/srv/photos": str(photos), "/srv/blurred": str(blurred)}


def localise(argv, folders):
    """The schedule's arguments with its example folders replaced by temporary ones."""
    for example, real in folders.items():
        argv = [argument.replace(example, real) for argument in argv]
    return argv


def pii_blur_arguments(command: list[str]) -> list[str]:
    """The arguments after the pii-blur executable in a command line."""
    index = next(i for i, word in enumerate(command) if word.endswith("/pii-blur"))
    return command[index + 1:]


def test_systemd_service_and_timer(tmp_path, folders):
    service = (SCHEDULES / "systemd" / "pii-blur.service").read_text()
    timer = (SCHEDULES / "systemd" / "pii-blur.timer").read_text()
    units = {}
    for name, text in (("service", service), ("timer", timer)):
        parser = configparser.ConfigParser(strict=True, interpolation=None)
        parser.optionxform = str
        parser.read_string(text)
        units[name] = parser
    assert units["service"]["Service"]["Type"] == "oneshot"
    assert units["timer"]["Timer"]["Unit"] == "pii-blur.service"
    assert units["timer"]["Install"]["WantedBy"] == "timers.target"
    command = shlex.split(units["service"]["Service"]["ExecStart"])
    args, _ = cli.parse_args(localise(pii_blur_arguments(command), folders))
    assert (args.input, args.output) == (folders["/srv/photos"], folders["/srv/blurred"])

    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (the units were parsed, not verified)")
    executable = Path(sys.executable).parent / "pii-blur"
    (tmp_path / "pii-blur.service").write_text(service.replace("/opt/pii-blur/.venv/bin/pii-blur", str(executable)))
    (tmp_path / "pii-blur.timer").write_text(timer)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "pii-blur.service"),
                             str(tmp_path / "pii-blur.timer")], capture_output=True, text=True)
    assert result.returncode == 0 and "pii-blur" not in result.stdout + result.stderr, result.stderr


CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?))*$")


def test_cron_line(folders):
    (line,) = [line for line in (SCHEDULES / "cron" / "pii-blur.cron").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    fields = line.split(None, 5)
    assert all(CRON_FIELD.match(field) for field in fields[:5]), fields[:5]
    command = shlex.split(fields[5])
    assert command[:3] == ["flock", "-n", "/tmp/pii-blur.lock"]     # never two runs on one OUTPUT
    command = command[:command.index(">>")]
    args, _ = cli.parse_args(localise(pii_blur_arguments(command), folders))
    assert args.output == folders["/srv/blurred"]


def test_launch_turns_options_into_pii_blurs_arguments():
    argv = launch.translate(["--input=gs://b/in", "--output=gs://b/out", "--min_probability=30", "--mode=fill",
                             "--max_pixels=1000", "--force=true", "--runner=DataflowRunner", "--summary-json=x.json"])
    assert argv == ["gs://b/in", "gs://b/out", "30", "--mode", "fill", "--max-pixels", "1000", "--force",
                    "--summary-json", "x.json", "--runner=DataflowRunner"]
    assert "--force" not in launch.translate(["--input=a", "--output=b", "--force=false"])
    assert launch.translate(["--input=a", "--output=b", "--force"]) == ["a", "b", "--force"]   # Airflow's flags
    with pytest.raises(SystemExit, match="--output"):
        launch.translate(["--input=a"])


def cli_options() -> set[str]:
    return {option for action in cli.make_parser()._actions for option in action.option_strings}


def test_flex_template_parameters_are_the_clis_options(folders):
    metadata = json.loads((SCHEDULES / "dataflow" / "metadata.json").read_text())
    names = [parameter["name"] for parameter in metadata["parameters"]]
    assert names[:3] == ["input", "output", "min_probability"]
    options = cli_options()
    for name in names[3:]:
        assert "--" + name.replace("_", "-") in options and name in launch.OPTIONS, name
    for parameter in metadata["parameters"]:
        assert parameter["isOptional"] == (parameter["name"] not in ("input", "output"))
    samples = {"input": "/srv/photos", "output": "/srv/blurred", "min_probability": "40", "classes": "face",
               "projection": "perspective", "mode": "pixelate", "max_pixels": "1000000", "force": "true",
               "report": "/srv/blurred/report.jsonl", "summary_json": "/srv/blurred/summary.json"}
    for parameter in metadata["parameters"]:
        for pattern in parameter.get("regexes", []):
            assert re.fullmatch(pattern, samples[parameter["name"]]), parameter["name"]
    argv = launch.translate(localise([f"--{name}={value}" for name, value in samples.items()], folders))
    args, _ = cli.parse_args(argv)
    assert (args.config.mode, args.config.force, args.config.min_probability) == ("pixelate", True, 0.4)


def test_every_option_launch_knows_is_a_cli_option():
    options = cli_options()
    for name in launch.OPTIONS:
        assert "--" + name.replace("_", "-") in options, name


@pytest.mark.skipif(not AIRFLOW_PYTHON.exists(),
                    reason="no Airflow venv at .venv-airflow (.ci/run creates it: pip install apache-airflow "
                           "'apache-airflow-providers-apache-beam[google]')")
def test_airflow_dag_loads_through_dagbag(tmp_path, folders):
    """In Airflow's own venv (its pins are not Beam's); the task's options then parse as pii-blur's."""
    script = """
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag   # Airflow 3
except ImportError:
    from airflow.models.dagbag import DagBag           # Airflow 2
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("pii_blur_nightly")
task = dag.get_task("blur_new_photos") if dag else None
print(json.dumps({"errors": {name: str(error) for name, error in bag.import_errors.items()},
                  "dags": sorted(bag.dag_ids),
                  "operator": type(task).__name__ if task else None,
                  "py_file": getattr(task, "py_file", None), "runner": getattr(task, "runner", None),
                  "options": getattr(task, "pipeline_options", None),
                  "params": {name: dag.params[name] for name in dag.params} if dag else None,
                  "max_active_runs": getattr(dag, "max_active_runs", None)}))
"""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([str(AIRFLOW_PYTHON), "-c", script, str(SCHEDULES / "airflow")], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["errors"] == {} and loaded["dags"] == ["pii_blur_nightly"]
    assert loaded["operator"] == "BeamRunPythonPipelineOperator"
    assert loaded["py_file"].endswith("/schedules/launch.py") and loaded["max_active_runs"] == 1
    rendered = {name: str(value).replace("{{ params.input }}", loaded["params"]["input"])
                .replace("{{ params.output }}", loaded["params"]["output"])
                .replace("{{ params.min_probability }}", str(loaded["params"]["min_probability"]))
                for name, value in loaded["options"].items()}
    argv = [f"--{name}={value}" for name, value in rendered.items()] + [f"--runner={loaded['runner']}"]
    args, runner = cli.parse_args(launch.translate(localise(argv, folders)))
    assert (args.input, args.output) == (folders["/srv/photos"], folders["/srv/blurred"])


def test_summary_json_is_refused_inside_input(folders, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args([folders["/srv/photos"], folders["/srv/blurred"],
                        "--summary-json", folders["/srv/photos"] + "/summary.json"])
    assert "--summary-json" in capsys.readouterr().err


def test_summary_json_is_the_reports_summary(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "rocket.jpg").write_bytes(jpeg_bytes(skimage.data.rocket()))
    (source / "empty.jpg").write_bytes(b"")
    summary_path = tmp_path / "alerts" / "summary.json"
    result = subprocess.run([sys.executable, "-m", "pii_blur.cli", str(source), str(tmp_path / "out"),
                             "--workers", "1", "--summary-json", str(summary_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]      # the empty file failed
    summary = json.loads(summary_path.read_text())
    report = [json.loads(line) for line in (tmp_path / "out" / "pii-blur-report.jsonl").read_text().splitlines()]
    assert summary == {**report[-1], "unreported": 0}   # and the launcher's check of every input against the report
    assert (summary["files"], summary["failed"], summary["copied"]) == (2, 1, 1)
    assert not [p for p in summary_path.parent.iterdir() if p != summary_path]   # no temporary file left
