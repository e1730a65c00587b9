"""Model files by path or URL, fetched through fsspec and cached by content hash.

A model is a single file (ONNX, ImageAI .pt), an archive of a TF SavedModel
(.tar.gz, .tgz, .tar, .zip), or a local SavedModel folder. Remote files
(https://, s3://, gs://, ...) are streamed into a temporary file in the cache
while being hashed, checked against the expected sha256 when one is given,
then renamed into place as CACHE/<sha256>/<file name>; archives are unpacked
next to them. A later fetch that names the sha256 is served from the cache
without touching the network. Local files are hashed and used in place.

The cache is $PII_BLUR_CACHE, else $XDG_CACHE_HOME/pii-blur/models, else
~/.cache/pii-blur/models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import uuid
import zipfile

import fsspec

LOG = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 20
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
UNPACKED = "unpacked"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or not the expected content."""


@dataclasses.dataclass(frozen=True)
class LocalModel:
    """A model ready to load. path: local file or folder; sha256: its content hash
    (of the file or archive; for a local folder, see tree_sha256)."""

    path: str
    sha256: str


def cache_dir() -> str:
    if os.environ.get("PII_BLUR_CACHE"):
        return os.environ["PII_BLUR_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pii-blur", "models")


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def is_archive(url: str) -> bool:
    return url.lower().endswith(ARCHIVE_SUFFIXES)


def fetch_model(url: str, sha256: str = "") -> LocalModel:
    """A local copy of the model at `url`, verified against `sha256` when given.

    Archives come back unpacked (path is the unpacked folder).

    Raises:
        ModelFileError: missing or unreadable, wrong hash, or a bad archive.
    """
    sha256 = sha256.lower().strip()
    if sha256 and not _SHA256.match(sha256):
        raise ModelFileError(f"sha256 for {url} must be 64 hex digits, got {sha256!r}")
    if is_local(url):
        path = _local_path(url)
        if os.path.isdir(path):
            return LocalModel(path, _verified(url, tree_sha256(path), sha256))
        if not os.path.isfile(path):
            raise ModelFileError(f"model file {url} does not exist")
        digest = _verified(url, file_sha256(path), sha256)
        return LocalModel(_unpack(path, digest) if is_archive(path) else path, digest)
    name = _file_name(url)
    if sha256:
        cached = os.path.join(cache_dir(), sha256, name)
        if os.path.isfile(cached):
            LOG.debug("model %s served from cache %s", url, cached)
            return LocalModel(_unpack(cached, sha256) if is_archive(name) else cached, sha256)
    cached, digest = _download(url, name, sha256)
    return LocalModel(_unpack(cached, digest) if is_archive(name) else cached, digest)


def _file_name(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "model"


def _verified(url: str, actual: str, expected: str) -> str:
    if expected and actual != expected:
        raise ModelFileError(f"model file {url} has sha256 {actual}, but the model config expects {expected}")
    return actual


def _download(url: str, name: str, expected: str) -> tuple[str, str]:
    """Stream `url` into the cache while hashing; returns (path, sha256)."""
    root = cache_dir()
    os.makedirs(root, exist_ok=True)
    temp_path = os.path.join(root, f".download-{uuid.uuid4().hex}")
    digest = hashlib.sha256()
    try:
        with fsspec.open(url, "rb") as source, open(temp_path, "wb") as target:
            while chunk := source.read(CHUNK_BYTES):
                digest.update(chunk)
                target.write(chunk)
    except FileNotFoundError:
        _remove(temp_path)
        raise ModelFileError(f"model file {url} does not exist") from None
    except Exception as error:  # noqa: BLE001 - any fetch failure is reported as one clear error
        _remove(temp_path)
        raise ModelFileError(f"cannot fetch model file {url}: {type(error).__name__}: {error}") from error
    actual = digest.hexdigest()
    try:
        _verified(url, actual, expected)
    except ModelFileError:
        _remove(temp_path)
        raise
    final_dir = os.path.join(root, actual)
    os.makedirs(final_dir, exist_ok=True)
    final_path = os.path.join(final_dir, name)
    os.replace(temp_path, final_path)   # atomic; a concurrent fetch of the same content writes the same bytes
    LOG.info("fetched model %s (sha256 %s) into %s", url, actual, final_path)
    return final_path, actual


def _unpack(archive: str, digest: str) -> str:
    """Unpack `archive` once into CACHE/<digest>/unpacked; returns that folder."""
    target = os.path.join(cache_dir(), digest, UNPACKED)
    if os.path.isdir(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temp = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(target))
    try:
        if archive.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(temp)
        else:
            with tarfile.open(archive) as tarred:
                tarred.extractall(temp, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as error:
        shutil.rmtree(temp, ignore_errors=True)
        raise ModelFileError(f"cannot unpack model archive {archive}: {error}") from error
    try:
        os.rename(temp, target)
    except OSError:   # another process unpacked it first
        shutil.rmtree(temp, ignore_errors=True)
    return target


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(folder: str) -> str:
    """Content hash of a folder: sha256 of the lines "<file sha256>  <relative path>\\n"
    for every file, sorted by relative path (paths with "/"), like `sha256sum`'s output.

    `cd FOLDER && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum`
    gives the same value.
    """
    lines = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            lines.append((relative, file_sha256(path)))
    text = "".join(f"{digest}  {relative}\n" for relative, digest in sorted(lines, key=lambda line: line[0].encode()))
    return hashlib.sha256(text.encode()).hexdigest()


def find_saved_model(folder: str) -> str:
    """The folder holding saved_model.pb: `folder` itself or the shallowest one inside it.

    Raises:
        ModelFileError: there is none.
    """
    best = None
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        if "saved_model.pb" in files and (best is None or root.count(os.sep) < best.count(os.sep)):
            best = root
    if best is None:
        raise ModelFileError(f"no saved_model.pb in {folder}: a TF SavedModel folder or archive is needed")
    return best
