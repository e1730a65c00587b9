"""Resuming: a record per finished input, so a rerun skips work already done.

After an output is written, a small JSON record goes to
OUTPUT/.pii-blur/manifest/RELATIVE_PATH.KEY.json, where KEY (record_key) is
a short hash of the input's size and version (etag or mtime) and a
fingerprint of the settings and the core's code; the record holds these and
the report line.
Because KEY is in the name, a listing of the manifest alone tells which
inputs are finished (pii_blur.plan), without reading one record per input.
A rerun reuses the record when its KEY still matches and the output exists;
anything else (a changed input, new settings, a missing output, a run
killed before the record was written) is processed again, and the records
of older KEYs for that input are then deleted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Optional

from pii_blur import __version__, storage
from pii_blur.types import FileReport, InputFile

RECORD_SUFFIX = ".json"
LOG = logging.getLogger(__name__)


def settings_fingerprint(classes, min_probability: float, projection: str, mode: str,
                         precisions: Optional[dict] = None, search_overrides: str = "") -> str:
    """Changes whenever a setting, or the code, that affects outputs changes.

    mode: the cover mode (pii_blur.blur.MODES). It is always part of the
    text, so outputs made before it existed, with the weaker blur of then,
    are redone too.
    precisions: built-in model name -> "int8" | "fp32", as run (chosen or
    default), so that a changed default redoes outputs too.
    search_overrides: the panorama search's hidden overrides (benchmarks), as given.
    The core's code counts too (core_source_digest).
    """
    text = json.dumps({"version": __version__, "classes": sorted(classes), "p": round(min_probability, 4),
                       "projection": projection, "mode": mode, "precisions": precisions or {},
                       "code": core_source_digest(), "search": search_overrides})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def core_source_digest(package: Path = Path(__file__).parent) -> str:
    """sha256 of the source of the modules that decide an output's bytes: `package`/*.py and
    `package`/models/*.py (their search resolutions, thresholds, blur, encoders and weight hashes).

    Detection and blurring change between versions more often than the
    version number does, so an upgraded pii-blur redoes the outputs of older
    code instead of keeping what it might now blur more of. pipeline/ and
    transforms/ only wire the core and do not count. Where the package is not
    installed as files (a zip import) there are none to read, and the version
    alone tells.
    """
    digest = hashlib.sha256()
    for path in sorted([*package.glob("*.py"), *package.glob("models/*.py")]):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def record_key(size, version, fingerprint: str) -> str:
    """16 hex digits naming one (size, version, settings) state of an input: the KEY in record names."""
    text = json.dumps([size, version, fingerprint])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_url(input_file: InputFile, fingerprint: str) -> str:
    """Where the record of `input_file` in its listed state, made with these settings, goes; '' if none.

    input_file.manifest_url is the record's name without KEY (RELATIVE.json).
    """
    if not input_file.manifest_url or input_file.version is None:
        return ""
    stem = input_file.manifest_url[:-len(RECORD_SUFFIX)]
    return f"{stem}.{record_key(input_file.size, input_file.version, fingerprint)}{RECORD_SUFFIX}"


def load_current(input_file: InputFile, fingerprint: str) -> Optional[FileReport]:
    """The finished report for this input if its output is still current, else None.

    For inputs that were not planned by listing (pii_blur.plan): one read of
    the record and one existence check of the output.
    """
    report = load_record(input_file, fingerprint)
    if report is not None and report.output and not storage.exists(input_file.output_url):
        return None
    return report


def load_record(input_file: InputFile, fingerprint: str) -> Optional[FileReport]:
    """The report line kept in this input's current record (one read), marked resumed; else None.

    Anything unexpected about the record (missing, unreadable, a folder, not
    JSON, JSON of another shape, another input's) means "redo this input",
    never an error. The output's existence is not checked here.
    """
    url = record_url(input_file, fingerprint)
    if not url:
        return None
    try:
        record = json.loads(storage.read_bytes(url))
        current = (record.get("size") == input_file.size and record.get("version") == input_file.version
                   and record.get("fingerprint") == fingerprint)
        if not current:
            return None
        return resumed_report(record["report"], input_file)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def resumed_report(line: dict, input_file: InputFile) -> Optional[FileReport]:
    """A finished report line (JSON) as this run's report of a resumed input; None if it is another input's.

    Raises:
        ValueError, KeyError, TypeError, AttributeError: `line` is not a report line.
    """
    report = FileReport.from_json(line)
    if report.path != input_file.url:
        return None
    report.resumed = True
    report.timings = {}
    return report


def record_finished(input_file: InputFile, report: FileReport, fingerprint: str) -> None:
    """Write the manifest record for a finished output (after the output itself)."""
    url = record_url(input_file, fingerprint)
    if not url:
        return
    record = {"size": input_file.size, "version": input_file.version, "fingerprint": fingerprint,
              "report": report.to_json()}
    storage.write_atomic(url, json.dumps(record, sort_keys=True).encode(), root=input_file.output_root)


def remove_records(urls) -> None:
    """Delete records an input no longer needs (those of its older KEYs); a failure only leaves one behind."""
    for url in urls:
        try:
            storage.remove(url)
        except OSError as error:
            LOG.warning("could not remove the stale record %s: %s", url, error)
