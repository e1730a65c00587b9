"""Listing, reading and atomically writing files on any fsspec store. No Beam."""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pii_blur.types import InputFile

GLOB_CHARS = "*?["
TEMP_MARKER = ".pii-blur-tmp-"
MANIFEST_FOLDER = ".pii-blur/manifest"


def _is_glob(path: str) -> bool:
    return any(char in path for char in GLOB_CHARS)


# Longest file name (bytes) most local file systems accept.
NAME_MAX = 255


def glob_prefix(path: str) -> str:
    """The fixed folder part of a glob (the components before the first with
    a wildcard); `path` itself if it has no wildcard. May be ""."""
    parts = path.split("/")
    for index, part in enumerate(parts):
        if _is_glob(part):
            return "/".join(parts[:index])
    return path


def list_inputs(input_spec: str, output_root: str) -> list[InputFile]:
    """Every file under `input_spec`, with the output URL that mirrors its relative path.

    input_spec: a file, a folder (searched recursively), a glob, or any fsspec URL.
    Sorted by URL, so the listing is deterministic.

    Symbolic links: INPUT itself may be one and is followed (the user named
    it). Links found inside INPUT, to files or folders, are listed but never
    followed: `read_bytes` refuses them, so each one ends in the report as
    failed, and nothing outside INPUT can reach OUTPUT. Folders behind links
    are not searched (no loops). FIFOs, sockets and devices are listed too and
    refused the same way, so every entry under INPUT appears in the report.

    Raises:
        FileNotFoundError: nothing matches.
    """
    fs, path = fsspec.core.url_to_fs(input_spec)
    path = path.rstrip("/") or "/"
    if _is_glob(path):
        base = glob_prefix(path)
        found = {p: info for p, info in fs.glob(path, detail=True).items() if info.get("type") != "directory"}
    elif fs.isdir(path):
        base = path
        found = fs.find(path, detail=True)
    elif fs.isfile(path):
        base = posixpath.dirname(path)
        target = os.path.realpath(path) if isinstance(fs, LocalFileSystem) else path
        found = {target: fs.info(target)}
        found[target]["relative"] = posixpath.basename(path)
    else:
        raise FileNotFoundError(f"input not found: {input_spec}")
    inputs = []
    for file_path in sorted(found):
        info = found[file_path]
        relative = info.get("relative") or (posixpath.relpath(file_path, base) if base else file_path.lstrip("/"))
        if TEMP_MARKER in posixpath.basename(relative):
            continue
        inputs.append(InputFile(url=fs.unstrip_protocol(file_path), relative_path=relative,
                                output_url=join_url(output_root, relative),
                                manifest_url=join_url(output_root, f"{MANIFEST_FOLDER}/{_manifest_name(relative)}"),
                                size=info.get("size"), version=file_version(info)))
    return inputs


def _manifest_name(relative: str) -> str:
    """RELATIVE.json, or a hash of the name where that would be too long a file name."""
    folder, name = posixpath.split(relative)
    record = name + ".json"
    if len(os.fsencode(record)) > NAME_MAX:
        record = hashlib.sha256(os.fsencode(name)).hexdigest() + ".json"
    return posixpath.join(folder, record)


def file_version(info: dict) -> str | None:
    """A string that changes when the file's content changes: etag, else mtime."""
    for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "updated", "last_modified", "created"):
        if info.get(key) is not None:
            return f"{key}:{info[key]}"
    return None


def _url_to_fs(url: str):
    """(filesystem, path) for one file's URL.

    A local path is taken literally: '::' in a file name is not fsspec's URL
    chaining (fsspec would read 'a::b.jpg' as 'a', and write there too).
    """
    protocol, path = fsspec.core.split_protocol(url)
    if protocol in ("file", "local") or (protocol is None and "/" in url.split("::", 1)[0]):
        return LocalFileSystem(), path
    return fsspec.core.url_to_fs(url)


def is_local_file(url: str) -> bool:
    """True if `url` is a local path or file:// URL naming an existing regular file."""
    protocol, path = fsspec.core.split_protocol(url)
    return protocol in (None, "file", "local") and os.path.isfile(path)


def exists(url: str) -> bool:
    fs, path = _url_to_fs(url)
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
    """The whole content of a file.

    Local files are opened without following a symbolic link in the last
    path component, and must be regular files: a link (perhaps to a file
    outside INPUT, or to /dev/zero), a FIFO (which would block) or a device
    raises OSError instead.
    """
    fs, path = _url_to_fs(url)
    if not isinstance(fs, LocalFileSystem):
        with fs.open(path, "rb") as handle:
            return handle.read()
    if os.path.islink(path):
        raise OSError(f"symbolic link, not followed: {path}")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags)   # O_NOFOLLOW: a link swapped in after the check fails (ELOOP)
    with os.fdopen(descriptor, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            kind = "folder" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else "special file"
            raise OSError(f"not a regular file ({kind}): {path}")
        return handle.read()


def write_atomic(url: str, data: bytes) -> None:
    """Write `data` so that `url` is never seen partially written.

    Local: a temporary file in the same folder, fsync, then rename over the
    target. Object stores: a single put, which is atomic there.
    """
    fs, path = _url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        # Not derived from the target's name, which may already be NAME_MAX long.
        temp = os.path.join(folder, f"{TEMP_MARKER}{uuid.uuid4().hex}")
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
