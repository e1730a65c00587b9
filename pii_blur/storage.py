"""Listing, reading and atomically writing files on any fsspec store. No Beam."""

from __future__ import annotations

import os
import posixpath
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pii_blur.types import InputFile

GLOB_CHARS = "*?["
TEMP_MARKER = ".pii-blur-tmp-"
MANIFEST_FOLDER = ".pii-blur/manifest"


def _is_glob(path: str) -> bool:
    return any(char in path for char in GLOB_CHARS)


def list_inputs(input_spec: str, output_root: str) -> list[InputFile]:
    """Every file under `input_spec`, with the output URL that mirrors its relative path.

    input_spec: a file, a folder (searched recursively), a glob, or any fsspec URL.
    Sorted by URL, so the listing is deterministic.

    Raises:
        FileNotFoundError: nothing matches.
    """
    fs, path = fsspec.core.url_to_fs(input_spec)
    path = path.rstrip("/") or "/"
    if _is_glob(path):
        parts = path.split("/")
        base = "/".join(parts[:next(i for i, part in enumerate(parts) if _is_glob(part))])
        found = {p: info for p, info in fs.glob(path, detail=True).items() if info.get("type") == "file"}
    elif fs.isdir(path):
        base = path
        found = fs.find(path, detail=True)
    elif fs.isfile(path):
        base = posixpath.dirname(path)
        found = {path: fs.info(path)}
    else:
        raise FileNotFoundError(f"input not found: {input_spec}")
    inputs = []
    for file_path in sorted(found):
        relative = posixpath.relpath(file_path, base) if base else file_path.lstrip("/")
        if TEMP_MARKER in posixpath.basename(relative):
            continue
        info = found[file_path]
        inputs.append(InputFile(url=fs.unstrip_protocol(file_path), relative_path=relative,
                                output_url=join_url(output_root, relative),
                                manifest_url=join_url(output_root, f"{MANIFEST_FOLDER}/{relative}.json"),
                                size=info.get("size"), version=file_version(info)))
    return inputs


def file_version(info: dict) -> str | None:
    """A string that changes when the file's content changes: etag, else mtime."""
    for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "updated", "last_modified", "created"):
        if info.get(key) is not None:
            return f"{key}:{info[key]}"
    return None


def exists(url: str) -> bool:
    fs, path = fsspec.core.url_to_fs(url)
    return fs.exists(path)


def remove_stale_temps(output_root: str) -> int:
    """Delete temporary files a killed run left under a local output folder; returns how many."""
    fs, path = fsspec.core.url_to_fs(output_root)
    if not isinstance(fs, LocalFileSystem) or not os.path.isdir(path):
        return 0
    removed = 0
    for folder, _, names in os.walk(path):
        for name in names:
            if name.startswith(TEMP_MARKER):
                os.remove(os.path.join(folder, name))
                removed += 1
    return removed


def join_url(root: str, relative: str) -> str:
    return root.rstrip("/") + "/" + relative


def normalise(url: str) -> str:
    """Canonical URL for comparing locations: local paths made absolute with
    links resolved, no trailing slash. Needs no filesystem driver installed."""
    protocol, path = fsspec.core.split_protocol(url)
    if protocol in (None, "file", "local"):
        return "file://" + os.path.realpath(path)
    return f"{protocol}://{path.rstrip('/')}"


def is_same_or_inside(inner: str, outer: str) -> bool:
    """True if `inner` is `outer` or lies under it."""
    inner_n, outer_n = normalise(inner), normalise(outer)
    return inner_n == outer_n or inner_n.startswith(outer_n + "/")


def read_bytes(url: str) -> bytes:
    with fsspec.open(url, "rb") as handle:
        return handle.read()


def write_atomic(url: str, data: bytes) -> None:
    """Write `data` so that `url` is never seen partially written.

    Local: a temporary file in the same folder, fsync, then rename over the
    target. Object stores: a single put, which is atomic there.
    """
    fs, path = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        temp = os.path.join(folder, f"{TEMP_MARKER}{uuid.uuid4().hex}-{os.path.basename(path)}")
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        finally:
            if os.path.exists(temp):
                os.remove(temp)
    else:
        fs.pipe_file(path, data)
