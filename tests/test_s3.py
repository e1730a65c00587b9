"""End to end against a real S3 server (moto's server mode on 127.0.0.1)."""

import json
import os
import socket
import subprocess
import sys
import time

import boto3
import numpy as np
import pytest
import skimage.data
from PIL import Image

from conftest import ASTRONAUT_FACE_BOX, add_metadata, high_frequency_energy, jpeg_bytes

pytest.importorskip("moto.server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, in its own process.

    (In-process, as a ThreadedMotoServer, it stalled after the Dask tests had
    run in the same pytest process.)
    """
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        server.kill()
        pytest.fail("moto server did not start")
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_bucket_to_bucket_with_metadata_and_resume(tmp_path, s3_env, astronaut):
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    s3.create_bucket(Bucket="photos")
    s3.create_bucket(Bucket="published")
    face_path = tmp_path / "face.jpg"
    face_path.write_bytes(jpeg_bytes(astronaut))
    add_metadata(str(face_path), thumbnail_rgb=astronaut)
    rocket = jpeg_bytes(skimage.data.rocket())
    s3.put_object(Bucket="photos", Key="trip/day 1/face.jpg", Body=face_path.read_bytes())
    s3.put_object(Bucket="photos", Key="trip/rocket.jpg", Body=rocket)
    s3.put_object(Bucket="photos", Key="trip/readme.txt", Body=b"just text")

    command = [sys.executable, "-m", "pii_blur.cli", "s3://photos/trip", "s3://published/out", "--workers", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**s3_env, **_path_env()})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "testing-secret" not in result.stdout + result.stderr      # credentials are never logged

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="published")["Contents"])
    outputs = [k for k in keys if "/.pii-blur/" not in k]
    assert outputs == ["out/day 1/face.jpg", "out/pii-blur-report.jsonl", "out/rocket.jpg"]  # no temporary objects
    assert s3.get_object(Bucket="published", Key="out/rocket.jpg")["Body"].read() == rocket

    blurred_path = tmp_path / "blurred.jpg"
    blurred_path.write_bytes(s3.get_object(Bucket="published", Key="out/day 1/face.jpg")["Body"].read())
    blurred = np.asarray(Image.open(blurred_path))
    assert high_frequency_energy(blurred, ASTRONAUT_FACE_BOX) < 0.2 * high_frequency_energy(astronaut, ASTRONAUT_FACE_BOX)
    tags = json.loads(subprocess.run(["exiftool", "-j", "-G1", "-GPSLatitude", "-XMP-GPano:ProjectionType",
                                      "-IPTC:Keywords", str(blurred_path)], capture_output=True, text=True).stdout)[0]
    assert tags["XMP-GPano:ProjectionType"] == "equirectangular" and tags["IPTC:Keywords"] == "street"
    assert "51 deg" in tags["GPS:GPSLatitude"]

    report = s3.get_object(Bucket="published", Key="out/pii-blur-report.jsonl")["Body"].read().decode()
    statuses = {json.loads(line)["path"].split("/")[-1]: json.loads(line)["status"] for line in report.splitlines()[:-1]}
    assert statuses == {"face.jpg": "blurred", "rocket.jpg": "copied", "readme.txt": "skipped"}

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**s3_env, **_path_env()})
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    report = s3.get_object(Bucket="published", Key="out/pii-blur-report.jsonl")["Body"].read().decode()
    resumed = [json.loads(line)["resumed"] for line in report.splitlines()[:-1] if '"skipped"' not in line]
    assert resumed == [True, True]


def _path_env():
    return {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
