"""Planning a run by listing: which inputs need work, told by names, not by reading records.

A rerun lists INPUT once and OUTPUT once (outputs and manifest records in
the same recursive listing; on object stores the store's paged listing, a
thousand names a request) and compares. Each record's name carries its
KEY, a hash of the input's size, version and settings fingerprint
(manifest.record_key), so an input is finished when the listing holds its
output and the record named with its current KEY. Only the rest enter the
pipeline's work; finished inputs pass through to the report as resumed.

Their report lines come from the index, OUTPUT/.pii-blur/index.json.gz:
{relative path: [KEY, report line]} for every input with an output, written
once by the launcher after a run that completed (write_index), from that
run's report and its plan (OUTPUT/.pii-blur/plan.json.gz: the KEY planned
for each input, written by the planner). A line is used only when its KEY
is the current one, so an index older than some records (a run killed
before it ended, a launcher that did not wait for the job) is never wrong:
an input whose line is missing or of another KEY costs one read of its
record, and a record that cannot be used makes the input redone.

Kills, at any point: a record is written only after its output, the index
only after the whole run, each atomically, and the index is always checked
against the listing.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import re
import time
from typing import Iterable, Optional, Sequence

from pii_blur import anonymize, imageio, manifest, storage
from pii_blur.types import FileReport, InputFile, Status

LOG = logging.getLogger(__name__)
INDEX_NAME = f"{storage.RUN_FOLDER}/index.json.gz"
PLAN_NAME = f"{storage.RUN_FOLDER}/plan.json.gz"
# Statuses whose inputs get an output and a record, hence an index line.
FINISHED_STATUSES = (Status.COPIED.value, Status.CLEANED.value, Status.BLURRED.value)
_KEYED_RECORD = re.compile(r"(.*)\.([0-9a-f]{16})")


@dataclasses.dataclass(frozen=True)
class Planning:
    """How to plan a run: the settings' fingerprint, --force, and the run's id (names its plan)."""

    fingerprint: str
    force: bool = False
    run_id: str = ""


@dataclasses.dataclass(frozen=True)
class TodoInput(InputFile):
    """An input the plan found unfinished.

    stale_records: URLs of its records of older KEYs, deleted once its new record is written.
    """

    stale_records: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class FinishedInput(InputFile):
    """An input whose output and current record were both listed.

    report_line: its report line (JSON text) from the index, or '' when the
    index had none of this KEY; then its record is read (finished_report).
    """

    report_line: str = ""


def list_planned(input_spec: str, output_root: str, report_url: str = "",
                 planning: Planning = Planning("")) -> list[InputFile]:
    """storage.list_inputs, then plan_inputs: every input, as a TodoInput or a FinishedInput."""
    return plan_inputs(storage.list_inputs(input_spec, output_root, report_url), output_root, planning)


def plan_inputs(inputs: Iterable[InputFile], output_root: str, planning: Planning) -> list[InputFile]:
    """Each input as a TodoInput or a FinishedInput, from one listing of OUTPUT and one read of the index.

    With planning.run_id, the KEY of every input is written to OUTPUT's plan
    (one write), for write_index after the run. With planning.force every
    input is to do.
    """
    started = time.perf_counter()
    listed = storage.list_files(output_root)
    records = _records_by_stem(listed)
    index = {} if planning.force else read_index(output_root)
    planned: list[InputFile] = []
    keys: dict[str, list[str]] = {}
    from_index = 0
    for item in inputs:
        fields = {field.name: getattr(item, field.name) for field in dataclasses.fields(InputFile)}
        stem = _record_stem(item, output_root)
        if item.problem or not stem or item.version is None:
            planned.append(TodoInput(**fields))
            continue
        key = manifest.record_key(item.size, item.version, planning.fingerprint)
        keys[item.url] = [item.relative_path, key]
        have = records.get(stem, {})
        if not planning.force and key in have and item.relative_path in listed:
            entry = index.get(item.relative_path)
            line = entry[1] if isinstance(entry, list) and len(entry) == 2 and entry[0] == key else ""
            from_index += bool(line)
            planned.append(FinishedInput(**fields, report_line=line if isinstance(line, str) else ""))
        else:
            stale = tuple(storage.join_url(output_root, path) for other, path in sorted(have.items()) if other != key)
            planned.append(TodoInput(**fields, stale_records=stale))
    finished = sum(isinstance(item, FinishedInput) for item in planned)
    LOG.info("planned %d inputs in %.2f s: %d to do, %d finished (%d report lines from the index)",
             len(planned), time.perf_counter() - started, len(planned) - finished, finished, from_index)
    if planning.run_id:
        plan = {"run": planning.run_id, "fingerprint": planning.fingerprint, "keys": keys}
        storage.write_atomic(storage.join_url(output_root, PLAN_NAME), _gzip_json(plan), root=output_root)
    return planned


def finished_report(input_file: FinishedInput, fingerprint: str) -> Optional[FileReport]:
    """The resumed report of a finished input: its line from the index, else its record (one read).

    None when neither can be used; the input is then redone.
    """
    if input_file.report_line:
        try:
            report = manifest.resumed_report(json.loads(input_file.report_line), input_file)
            if report is not None:
                return report
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return manifest.load_record(input_file, fingerprint)


def work_estimates(inputs: Sequence[InputFile]) -> list[int]:
    """The work each input brings, for sharing inputs among local workers; none if finished.

    When some inputs are local images, the pixels their detectors will search,
    from each image's header (anonymize.search_pixels): a small panorama is
    upscaled and costs as much as a large one, which its bytes do not show.
    A local file whose header cannot be read (not an image) counts as 1: it
    is skipped or fails at once. Otherwise (remote inputs) the listed bytes,
    an unknown size counting as 1.
    """
    to_do = [item for item in inputs if not isinstance(item, FinishedInput)]
    sizes = {item.url: imageio.header_size(storage.local_path(item.url)) for item in to_do
             if storage.is_local_path(item.url)}
    if not any(sizes.values()):
        return [0 if isinstance(item, FinishedInput) else item.size or 1 for item in inputs]
    return [0 if isinstance(item, FinishedInput) else
            anonymize.search_pixels(*sizes[item.url]) if sizes.get(item.url) else 1 for item in inputs]


def read_index(output_root: str) -> dict:
    """The index, {relative path: [KEY, report line]}; empty if missing or unreadable."""
    url = storage.join_url(output_root, INDEX_NAME)
    try:
        index = json.loads(gzip.decompress(storage.read_bytes(url)))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, EOFError) as error:
        LOG.warning("ignoring the unreadable index %s (finished inputs read their records): %s", url, error)
        return {}
    return index.get("lines", {}) if isinstance(index, dict) else {}


def write_index(output_root: str, report: Iterable[dict], run_id: str) -> int:
    """After a completed run: the index from its plan and its report's lines; returns its line count.

    Written only when the plan is this run's (run_id), so a report and a
    plan of different runs are never joined.
    """
    plan_url = storage.join_url(output_root, PLAN_NAME)
    try:
        plan = json.loads(gzip.decompress(storage.read_bytes(plan_url)))
    except (OSError, ValueError, EOFError) as error:
        LOG.warning("no index written: the run's plan %s cannot be read: %s", plan_url, error)
        return 0
    if not isinstance(plan, dict) or plan.get("run") != run_id:
        LOG.warning("no index written: %s is not this run's plan", plan_url)
        return 0
    keys = plan.get("keys", {})
    lines = {}
    for line in report:
        planned = keys.get(line.get("path"))
        if planned and line.get("status") in FINISHED_STATUSES:
            relative, key = planned
            lines[relative] = [key, json.dumps(line, sort_keys=True)]
    storage.write_atomic(storage.join_url(output_root, INDEX_NAME),
                         _gzip_json({"run": run_id, "lines": lines}), root=output_root)
    return len(lines)


def _records_by_stem(listed: Iterable[str]) -> dict[str, dict[str, str]]:
    """Listed manifest records, {RELATIVE stem: {KEY: record path}}; KEY '' for a record of the older, unkeyed name."""
    records: dict[str, dict[str, str]] = {}
    prefix = storage.MANIFEST_FOLDER + "/"
    for path in listed:
        if not path.startswith(prefix) or not path.endswith(manifest.RECORD_SUFFIX):
            continue
        stem = path[:-len(manifest.RECORD_SUFFIX)]
        keyed = _KEYED_RECORD.fullmatch(stem)
        stem, key = (keyed.group(1), keyed.group(2)) if keyed else (stem, "")
        records.setdefault(stem, {})[key] = path
    return records


def _record_stem(input_file: InputFile, output_root: str) -> str:
    """The input's record path relative to OUTPUT, without KEY and suffix; '' if it has none there."""
    root = output_root.rstrip("/") + "/"
    url = input_file.manifest_url
    if not url.startswith(root) or not url.endswith(manifest.RECORD_SUFFIX):
        return ""
    return url[len(root):-len(manifest.RECORD_SUFFIX)]


def _gzip_json(value) -> bytes:
    return gzip.compress(json.dumps(value, separators=(",", ":")).encode(), compresslevel=5, mtime=0)
