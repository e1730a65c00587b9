"""End to end against a real S3 server (moto's server mode on 127.0.0.1)."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import base64
import collections
import concurrent.futures
import urllib.parse
import urllib.request

import boto3
import botocore.config
import numpy as np
import pytest
import skimage.data
from PIL import Image

from conftest import ASTRONAUT_FACE_BOX, add_metadata, high_frequency_energy, jpeg_bytes
from pii_blur import manifest, plan, storage
from pii_blur.config import BlurConfig
from pii_blur.types import FileReport, Status

pytest.importorskip("moto.server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# moto's server in its own process; each stdin line {"bucket": B, "objects": {key: base64}} is
# stored straight into its backend, as if uploaded (answered "seeded N"): for archives of
# thousands of objects, which would take minutes through HTTP.
SERVER = """
import base64, json, sys
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.s3.models import s3_backends
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
for line in sys.stdin:
    batch = json.loads(line)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key, data in batch["objects"].items():
        backend.put_object(batch["bucket"], key, base64.b64decode(data))
    print("seeded", len(batch["objects"]), flush=True)
server.stop()
"""


class MotoServer:
    """moto's S3 server on 127.0.0.1, in its own process (see SERVER).

    (In-process, as a ThreadedMotoServer, it stalled after the Dask tests had
    run in the same pytest process.) Its request recorder, off until a test
    starts it (RequestRecording), writes to a temporary file.
    """

    def __init__(self, recording: str):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(self.port)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        env={**os.environ, "MOTO_RECORDER_FILEPATH": recording})

    def seed(self, bucket: str, objects: dict[str, bytes], batch: int = 2000) -> None:
        """Store `objects` (key -> content) in an existing bucket, bypassing HTTP."""
        items = list(objects.items())
        for start in range(0, len(items), batch):
            chunk = {key: base64.b64encode(data).decode() for key, data in items[start:start + batch]}
            self.process.stdin.write(json.dumps({"bucket": bucket, "objects": chunk}) + "\n")
            self.process.stdin.flush()
            assert self.process.stdout.readline().split() == ["seeded", str(len(chunk))]

    def stop(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    server = MotoServer(str(tmp_path_factory.mktemp("moto") / "recording.jsonl"))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        server.process.kill()
        pytest.fail("moto server did not start")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_endpoint(s3_server):
    return s3_server.endpoint


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


ARCHIVE_SIZE = 10_000
NEW_UPLOADS = 100


@pytest.mark.slow
def test_nightly_rerun_plans_by_listing(tmp_path, s3_server, s3_env, monkeypatch):
    """A 10,000-object archive, finished; 100 photos are uploaded; the rerun reads no record of the rest.

    The first run's results are made by the planner's own record and index
    writers and stored straight into the server (tiny objects stand for
    photos: processing 10,000 real ones, or uploading 30,000 objects over
    HTTP, would take minutes); the 100 uploads and the rerun are real. moto's recorder
    counts the rerun's requests by kind. The same test run on the code before
    this planner counted 40,432 requests: a HEAD and a GET of each unchanged
    input's record, a HEAD of its output, and 216 listing requests.
    """
    endpoint = s3_env["AWS_ENDPOINT_URL"]
    s3 = boto3.client("s3", endpoint_url=endpoint, config=botocore.config.Config(max_pool_connections=16))
    setup_started = time.perf_counter()
    s3.create_bucket(Bucket="archive")
    s3.create_bucket(Bucket="blurred")
    old = ARCHIVE_SIZE - NEW_UPLOADS
    s3_server.seed("archive", {f"photos/{i // 1000:02d}/old-{i:05d}.jpg": b"stands for a photo %d" % i
                               for i in range(old)})
    fingerprint = BlurConfig().fingerprint()
    written = {}   # what the first run's writers write (outputs, records, its plan, its index), then seeded
    with monkeypatch.context() as patch:
        patch.setattr(storage, "write_atomic", lambda url, data, root="": written.__setitem__(url, data))
        read = storage.read_bytes
        patch.setattr(storage, "read_bytes", lambda url: written[url] if url in written else read(url))
        inputs = plan.list_planned("s3://archive/photos", "s3://blurred/out", "",
                                   plan.Planning(fingerprint, run_id="1"))
        reports = [FileReport(path=f.url, status=Status.COPIED, output=f.output_url, size_bytes=f.size)
                   for f in inputs]
        for item, report in zip(inputs, reports):
            storage.write_atomic(item.output_url, b"copy")
            manifest.record_finished(item, report, fingerprint)
        assert plan.write_index("s3://blurred/out", (r.to_json() for r in reports), "1") == old
    s3_server.seed("blurred", {url.removeprefix("s3://blurred/"): data for url, data in written.items()})
    assert len(written) == 2 * old + 2

    new_photo = jpeg_bytes(np.asarray(Image.fromarray(skimage.data.rocket()).resize((96, 64))), quality=85)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:   # real uploads
        list(pool.map(lambda i: s3.put_object(Bucket="archive", Key=f"photos/new/new-{i:03d}.jpg", Body=new_photo),
                      range(NEW_UPLOADS)))
    print(f"\nthe first run's {old} inputs, outputs and records seeded, and {NEW_UPLOADS} photos uploaded, in {time.perf_counter() - setup_started:.1f} s")
    command = [sys.executable, "-m", "pii_blur.cli", "s3://archive/photos", "s3://blurred/out", "--workers", "2"]
    with RequestRecording(endpoint) as recording:
        started = time.perf_counter()
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**s3_env, **_path_env()})
        seconds = time.perf_counter() - started
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    counts = recording.counts()
    print(f"rerun of {ARCHIVE_SIZE} inputs, {NEW_UPLOADS} new, in {seconds:.1f} s; requests by kind:")
    for kind, count in sorted(counts.items()):
        print(f"  {kind:28s} {count}")
    print(f"  {sum(counts.values())} in all (before listing planning: 40,432, with {3 * old} for the unchanged "
          f"inputs' records and outputs)")
    logs = s3.list_objects_v2(Bucket="blurred", Prefix="out/.pii-blur/logs/")["Contents"]
    log = s3.get_object(Bucket="blurred", Key=logs[-1]["Key"])["Body"].read().decode()
    print("planning, from the run's log:", re.search(r"planned \d+ inputs in [0-9.]+ s.*", log).group(0))

    lines = [json.loads(line) for line in
             s3.get_object(Bucket="blurred", Key="out/pii-blur-report.jsonl")["Body"].read().decode().splitlines()]
    assert lines[-1]["files"] == ARCHIVE_SIZE and lines[-1]["failed"] == 0
    resumed = collections.Counter((line["resumed"], "/new/" in line["path"]) for line in lines[:-1])
    assert resumed == {(True, False): old, (False, True): NEW_UPLOADS}
    assert counts["GET record"] == 0 and counts["HEAD output"] == 0 and counts["GET input (old)"] == 0
    assert counts["GET input (new)"] >= NEW_UPLOADS
    new_files_own = (counts["HEAD input (new)"] + counts["GET input (new)"] + counts["PUT output"]
                     + counts["PUT record"])
    listing = counts["LIST"]
    assert listing <= 2 * (3 * ARCHIVE_SIZE // 1000 + 5)
    others = sum(counts.values()) - listing - new_files_own
    assert others < 100, counts


class RequestRecording:
    """moto's request recorder around a block; counts() sorts the requests into kinds."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.entries: list[tuple[str, str]] = []

    def _call(self, action: str, method: str = "POST") -> bytes:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", method=method)
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def __enter__(self):
        self._call("reset-recording")
        self._call("start-recording")
        return self

    def __exit__(self, *exc):
        self._call("stop-recording")
        # The recorder appends from many threads without a lock, so a large entry (a body
        # over the write buffer) can be split by another; each entry's method and URL lead it.
        text = self._call("download-recording", method="GET").decode()
        self.entries = re.findall(r'"method": "([A-Z]+)", "url": "([^"]*)"', text)

    def counts(self) -> collections.Counter:
        return collections.Counter(_kind(method, url) for method, url in self.entries)


def _kind(method: str, url: str) -> str:
    """'LIST', or METHOD and what the object is (input, output, record, run file)."""
    parsed = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    bucket, _, key = urllib.parse.unquote(parsed.path).lstrip("/").partition("/")
    if method == "GET" and (not key or "list-type" in query or "prefix" in query):
        return "LIST"
    if method == "POST" and "delete" in query:
        return "POST batch delete"
    if bucket == "archive":
        what = "input (new)" if "/new/" in key else "input (old)"
    elif "/.pii-blur/manifest/" in key:
        what = "record"
    elif "pii-blur-report.jsonl" in key:
        what = "run file report" + (" part" if ".parts/" in key else "")
    elif "/.pii-blur/" in key:
        what = "run file " + re.sub(r"\d{8}T\d{6}Z", "TIME", key.rsplit("/", 1)[-1])
    else:
        what = "output"
    return f"{method} {what}"


def _path_env():
    return {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
