"""Listing, reading and atomically writing files on any fsspec store. No Beam."""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import stat
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pii_blur.types import InputFile

GLOB_CHARS = "*?["
TEMP_MARKER = ".pii-blur-tmp-"
_TEMP_NAME = re.compile(re.escape(TEMP_MARKER) + "[0-9a-f]{32}")
RUN_FOLDER = ".pii-blur"
MANIFEST_FOLDER = f"{RUN_FOLDER}/manifest"


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


def list_inputs(input_spec: str, output_root: str, report_url: str = "") -> list[InputFile]:
    """Every file under `input_spec`, with the output URL that mirrors its relative path.

    input_spec: a file, a folder (searched recursively), a glob, or any fsspec URL.
    A path that exists is taken literally, even if it holds glob characters
    (a folder named `photos[1]`). Sorted by URL, so the listing is deterministic.
    report_url: the run's report; an input whose output would land on it is
    listed with a `problem`, and so are inputs with names pii-blur reserves
    (reserved_name) and local folders that cannot be listed, so each one
    reaches the report as failed instead of vanishing.

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
    unlisted: dict[str, str] = {}
    if _is_glob(path) and not fs.exists(path):
        base = glob_prefix(path)
        found = {p: info for p, info in fs.glob(path, detail=True).items() if info.get("type") != "directory"}
    elif fs.isdir(path):
        base = path
        if isinstance(fs, LocalFileSystem):
            found, unlisted = _walk_local(path)
        else:
            found = fs.find(path, detail=True)
    elif fs.isfile(path):
        base = posixpath.dirname(path)
        target = os.path.realpath(path) if isinstance(fs, LocalFileSystem) else path
        found = {target: fs.info(target)}
        found[target]["relative"] = posixpath.basename(path)
    else:
        raise FileNotFoundError(f"input not found: {input_spec}")
    inputs = []
    for file_path in sorted(set(found) | set(unlisted)):
        info = found.get(file_path, {})
        relative = info.get("relative") or (posixpath.relpath(file_path, base) if base else file_path.lstrip("/"))
        output_url = join_url(output_root, relative)
        problem = unlisted.get(file_path) or reserved_name(relative)
        if not problem and report_url and normalise(output_url) == normalise(report_url):
            problem = "its output would be the run's report (rename it, or choose another --report)"
        inputs.append(InputFile(url=fs.unstrip_protocol(file_path), relative_path=relative,
                                output_url=output_url,
                                manifest_url=join_url(output_root, f"{MANIFEST_FOLDER}/{_manifest_name(relative)}"),
                                size=info.get("size"), version=file_version(info), problem=problem,
                                output_root=output_root))
    return inputs


def reserved_name(relative: str) -> str:
    """Why pii-blur cannot write an output at `relative` under OUTPUT, or ''.

    Its run records live in OUTPUT/.pii-blur/ and its temporary files are
    named .pii-blur-tmp-<32 hex digits>; an input mirrored onto either would
    be overwritten or deleted by the run itself.
    """
    if relative.split("/", 1)[0] == RUN_FOLDER:
        return f"name reserved: pii-blur keeps its run records in OUTPUT/{RUN_FOLDER}/"
    if _TEMP_NAME.fullmatch(posixpath.basename(relative)):
        return "name reserved: pii-blur names its temporary files this way"
    return ""


def _walk_local(folder: str) -> tuple[dict[str, dict], dict[str, str]]:
    """Every entry below a local folder (links not followed), and the folders that could not be read.

    Returns ({path: info}, {folder path: reason}).
    """
    found, unlisted = {}, {}

    def failed(error: OSError) -> None:
        unlisted[error.filename] = f"folder could not be listed: {error.strerror or error}"

    for parent, folders, names in os.walk(folder, onerror=failed):
        for name in names + [f for f in folders if os.path.islink(os.path.join(parent, f))]:
            entry = os.path.join(parent, name)
            try:
                status = os.lstat(entry)
            except OSError as error:
                unlisted[entry] = f"could not be listed: {error.strerror or error}"
                continue
            found[entry] = {"size": status.st_size, "mtime": status.st_mtime, "created": status.st_ctime,
                            "ino": status.st_ino}
    return found, unlisted


# Room in a record's name for ".KEY" (pii_blur.manifest.record_key: a dot and 16 hex digits).
RECORD_KEY_ROOM = 17


def _manifest_name(relative: str) -> str:
    """RELATIVE.json, or a hash of the name where RELATIVE.KEY.json would be too long a file name.

    The manifest inserts the record's KEY before ".json" (manifest.record_url).
    """
    folder, name = posixpath.split(relative)
    record = name + ".json"
    if len(os.fsencode(record)) + RECORD_KEY_ROOM > NAME_MAX:
        record = hashlib.sha256(os.fsencode(name)).hexdigest() + ".json"
    return posixpath.join(folder, record)


def list_files(root: str) -> dict[str, dict]:
    """Every file below the folder or prefix `root`, by path relative to it, with its listed info.

    One recursive listing (on object stores, the store's paged listing of the
    prefix; locally, a walk that follows no links). A missing `root` has no files.
    """
    fs, path = fsspec.core.url_to_fs(root)
    path = path.rstrip("/") or "/"
    if isinstance(fs, LocalFileSystem):
        if not os.path.isdir(path):
            return {}
        found, _ = _walk_local(path)
    else:
        try:
            found = fs.find(path, detail=True)
        except FileNotFoundError:
            return {}
    return {posixpath.relpath(file_path, path): info for file_path, info in found.items()
            if info.get("type") != "directory"}


def remove(url: str) -> None:
    """Delete one file (a symbolic link itself, never its target); a missing file is no error."""
    fs, path = _url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def file_version(info: dict) -> str | None:
    """A string that changes when the file's content changes.

    Object stores: the etag or generation. Local files: modification time,
    change time and inode together, so content written back with its old
    mtime (`touch -r`) still counts as changed: that also sets the ctime.
    """
    for key in ("ETag", "etag", "md5Hash", "generation", "VersionId"):
        if info.get(key) is not None:
            return f"{key}:{info[key]}"
    stamps = [f"{key}:{info[key]}" for key in ("mtime", "created", "ino", "LastModified", "updated",
                                              "last_modified") if info.get(key) is not None]
    return ";".join(stamps) or None


def _url_to_fs(url: str):
    """(filesystem, path) for one file's URL.

    A local path is taken literally: '::' in a file name is not fsspec's URL
    chaining (fsspec would read 'a::b.jpg' as 'a', and write there too).
    """
    protocol, path = fsspec.core.split_protocol(url)
    if protocol in ("file", "local") or (protocol is None and "/" in url.split("::", 1)[0]):
        return LocalFileSystem(), path
    return fsspec.core.url_to_fs(url)


def is_local_path(url: str) -> bool:
    """True if `url` names a local path (no protocol, or file://)."""
    return fsspec.core.split_protocol(url)[0] in (None, "file", "local")


def local_path(url: str) -> str:
    """The filesystem path that a local `url` (is_local_path) names."""
    return fsspec.core.split_protocol(url)[1]


def input_root(input_spec: str) -> str:
    """The file or folder an INPUT covers: itself if it exists as a local path
    (even with glob characters in its name), else the fixed part of its glob."""
    if is_local_path(input_spec) and os.path.exists(local_path(input_spec)):
        return input_spec
    return glob_prefix(input_spec) or "."


def parent_url(url: str) -> str:
    """The folder `url` lies in."""
    return url.rstrip("/").rsplit("/", 1)[0] if "/" in url.rstrip("/") else "."


def unwritable(folder_url: str) -> str:
    """Why files cannot be created in a local folder (creating it if needed), or ''.

    Object stores are not probed: their permissions show on the first write.
    """
    if not is_local_path(folder_url):
        return ""
    folder = local_path(folder_url)
    probe = os.path.join(folder, f"{TEMP_MARKER}{uuid.uuid4().hex}")
    try:
        os.makedirs(folder, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        os.remove(probe)
    except OSError as error:
        return error.strerror or str(error)
    return ""


def is_local_file(url: str) -> bool:
    """True if `url` is a local path or file:// URL naming an existing regular file."""
    return is_local_path(url) and os.path.isfile(local_path(url))


def exists(url: str) -> bool:
    fs, path = _url_to_fs(url)
    return fs.exists(path)


def remove_stale_temps(output_root: str) -> int:
    """Delete temporary files a killed run left under a local output folder; returns how many.

    Only names that write_atomic makes are removed, and links are not followed.
    """
    fs, path = fsspec.core.url_to_fs(output_root)
    if not isinstance(fs, LocalFileSystem) or not os.path.isdir(path):
        return 0
    removed = 0
    for folder, _, names in os.walk(path):
        for name in names:
            if _TEMP_NAME.fullmatch(name):
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


def write_atomic(url: str, data: bytes, root: str = "") -> None:
    """Write `data` so that `url` is never seen partially written (see open_atomic)."""
    with open_atomic(url, root) as handle:
        handle.write(data)


@contextlib.contextmanager
def open_atomic(url: str, root: str = ""):
    """A binary file to write `url` through; it appears under its name only when the block ends without error.

    Local: a temporary file in the same folder, fsync, then rename over the
    target. Folders below `root` (OUTPUT, for outputs and run records) are
    created and entered without following symbolic links, and the target
    itself may not be a link, so a link planted in OUTPUT can never send a
    write onto an input or anywhere else; `root` itself is followed (the
    user named it). Without `root`, only the target's folder is followed.
    Object stores: one upload, which they make visible only when complete.

    Raises:
        OutsideOutput: a link or a non-folder is in the way.
    """
    fs, path = _url_to_fs(url)
    if not isinstance(fs, LocalFileSystem):
        handle = fs.open(path, "wb")
        try:
            yield handle
        except BaseException:
            if hasattr(handle, "discard"):   # abort a multipart upload; never close, which would commit it
                handle.discard()
            raise
        handle.close()
        return
    root_path = _url_to_fs(root)[1] if root else os.path.dirname(path)
    os.makedirs(root_path, exist_ok=True)
    relative = os.path.relpath(os.path.dirname(path), root_path) if root else "."
    if relative.split(os.sep, 1)[0] == "..":
        raise OutsideOutput(f"{path} is not inside {root_path}")
    folder = _open_folder_no_links(root_path, relative)
    name = os.path.basename(path)
    # Not derived from the target's name, which may already be NAME_MAX long.
    temp = f"{TEMP_MARKER}{uuid.uuid4().hex}"
    try:
        try:
            if stat.S_ISLNK(os.lstat(name, dir_fd=folder).st_mode):
                raise OutsideOutput(f"{path} is a symbolic link; not written through")
        except FileNotFoundError:
            pass
        handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=folder)
        try:
            with os.fdopen(handle, "wb") as stream:
                yield stream
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=folder)
    finally:
        os.close(folder)


class OutsideOutput(OSError):
    """A write would leave OUTPUT: through a symbolic link, or onto something that is not a folder."""


def _open_folder_no_links(root: str, relative: str) -> int:
    """A descriptor of root/relative, creating its folders; no link below `root` is followed."""
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in [] if relative == "." else relative.split(os.sep):
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=folder)
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
            except OSError as error:
                raise OutsideOutput(f"{os.path.join(root, relative)}: {part} is a symbolic link or not a "
                                    f"folder ({error.strerror}); not written through") from error
            os.close(folder)
            folder = inner
    except BaseException:
        os.close(folder)
        raise
    return folder
