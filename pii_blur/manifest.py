"""Resuming: a record per finished input, so a rerun skips work already done.

After an output is written, a small JSON record goes to
OUTPUT/.pii-blur/manifest/RELATIVE_PATH.json with the input's size and
version (etag or mtime), a fingerprint of the settings, and the report line.
A rerun reuses the record when all of these still match and the output
exists; anything else (a changed input, new settings, a missing output, a
run killed before the record was written) is processed again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Optional

from pii_blur import __version__, storage
from pii_blur.types import FileReport, InputFile


def settings_fingerprint(classes, min_probability: float, projection: str, mode: str,
                         precisions: Optional[dict] = None) -> str:
    """Changes whenever a setting that affects outputs changes.

    mode: the cover mode (pii_blur.blur.MODES). It is always part of the
    text, so outputs made before it existed, with the weaker blur of then,
    are redone too.
    precisions: built-in model name -> "int8" | "fp32", as run (chosen or
    default), so that a changed default redoes outputs too.
    """
    text = json.dumps({"version": __version__, "classes": sorted(classes), "p": round(min_probability, 4),
                       "projection": projection, "mode": mode, "precisions": precisions or {}})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_current(input_file: InputFile, fingerprint: str) -> Optional[FileReport]:
    """The finished report for this input if its output is still current, else None.

    Anything unexpected about the record (missing, unreadable, a folder, not
    JSON, JSON of another shape) means "redo this input", never an error.
    """
    if not input_file.manifest_url or input_file.version is None:
        return None
    try:
        record = json.loads(storage.read_bytes(input_file.manifest_url))
        current = (record.get("size") == input_file.size and record.get("version") == input_file.version
                   and record.get("fingerprint") == fingerprint)
        if not current:
            return None
        report = FileReport.from_json(record["report"])
        if report.path != input_file.url:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if report.output and not storage.exists(input_file.output_url):
        return None
    report.resumed = True
    report.timings = {}
    return report


def record_finished(input_file: InputFile, report: FileReport, fingerprint: str) -> None:
    """Write the manifest record for a finished output (after the output itself)."""
    if not input_file.manifest_url or input_file.version is None:
        return
    record = {"size": input_file.size, "version": input_file.version, "fingerprint": fingerprint,
              "report": report.to_json()}
    storage.write_atomic(input_file.manifest_url, json.dumps(record, sort_keys=True).encode(),
                         root=input_file.output_root)
