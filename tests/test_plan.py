"""Planning by listing: record names say which inputs are finished; the index gives their report lines."""

import json
import os
import time

import pytest

from pii_blur import manifest, plan, storage
from pii_blur.types import FileReport, Status

FINGERPRINT = "f" * 16


@pytest.fixture
def finished_run(tmp_path):
    """INPUT with three files; OUTPUT as a completed run left it for a.jpg and b.jpg (c.jpg is new).

    The index has a.jpg's line only, as after a run that was killed once b.jpg was done.
    """
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (source / name).write_bytes(name.encode() * 10)
    inputs = {f.relative_path: f for f in storage.list_inputs(str(source), str(out))}
    for name in ("a.jpg", "b.jpg"):
        finish(inputs[name])
    plan.plan_inputs([inputs["a.jpg"]], str(out), plan.Planning(FINGERPRINT, run_id="one"))
    plan.write_index(str(out), [report_of(inputs["a.jpg"]).to_json()], "one")
    return source, out


def report_of(input_file):
    return FileReport(path=input_file.url, status=Status.COPIED, output=input_file.output_url,
                      size_bytes=input_file.size, worker="first-run")


def finish(input_file):
    storage.write_atomic(input_file.output_url, b"output", root=input_file.output_root)
    manifest.record_finished(input_file, report_of(input_file), FINGERPRINT)


def planned(source, out, **planning):
    return {f.relative_path: f for f in plan.list_planned(str(source), str(out), "",
                                                          plan.Planning(FINGERPRINT, **planning))}


def test_listing_tells_finished_inputs_with_one_read(finished_run, monkeypatch):
    source, out = finished_run
    reads = []
    original = storage.read_bytes
    monkeypatch.setattr(storage, "read_bytes", lambda url: reads.append(url) or original(url))
    inputs = planned(source, out)
    assert reads == [storage.join_url(str(out), plan.INDEX_NAME)]
    assert isinstance(inputs["a.jpg"], plan.FinishedInput) and inputs["a.jpg"].report_line
    assert isinstance(inputs["b.jpg"], plan.FinishedInput) and not inputs["b.jpg"].report_line
    assert isinstance(inputs["c.jpg"], plan.TodoInput)

    resumed = plan.finished_report(inputs["a.jpg"], FINGERPRINT)     # from the index: no read
    assert (resumed.resumed, resumed.worker, resumed.timings) == (True, "first-run", {})
    assert len(reads) == 1
    assert plan.finished_report(inputs["b.jpg"], FINGERPRINT).resumed    # no line: its record, one read
    assert len(reads) == 2


def test_record_names_carry_the_key(finished_run):
    _, out = finished_run
    records = sorted(p.name for p in (out / ".pii-blur" / "manifest").iterdir())
    assert len(records) == 2
    for name in records:
        stem, key, suffix = name.rsplit(".", 2)
        assert stem in ("a.jpg", "b.jpg") and suffix == "json" and len(key) == 16


def test_changed_input_missing_output_and_new_settings_are_to_do(finished_run):
    source, out = finished_run
    (source / "a.jpg").write_bytes(b"changed content")
    os.utime(source / "a.jpg", (time.time() + 5, time.time() + 5))
    (out / "b.jpg").unlink()
    inputs = planned(source, out)
    assert all(isinstance(f, plan.TodoInput) for f in inputs.values())
    old_record = next(p for p in (out / ".pii-blur" / "manifest").iterdir() if p.name.startswith("a.jpg."))
    assert inputs["a.jpg"].stale_records == (str(old_record),)

    again = {f.relative_path: f for f in plan.list_planned(str(source), str(out), "", plan.Planning("other"))}
    assert all(isinstance(f, plan.TodoInput) for f in again.values())


def test_force_plans_every_input_to_do(finished_run):
    source, out = finished_run
    assert all(isinstance(f, plan.TodoInput) for f in planned(source, out, force=True).values())


def test_index_line_of_another_key_is_not_used(finished_run):
    """A run killed after redoing a.jpg (new KEY, new record) but before its index: its record is read."""
    source, out = finished_run
    (source / "a.jpg").write_bytes(b"new content!")
    os.utime(source / "a.jpg", (time.time() + 5, time.time() + 5))
    current = planned(source, out)["a.jpg"]
    redone = FileReport(path=current.url, status=Status.BLURRED, output=current.output_url, worker="second-run")
    manifest.record_finished(current, redone, FINGERPRINT)
    manifest.remove_records(current.stale_records)

    a = planned(source, out)["a.jpg"]
    assert isinstance(a, plan.FinishedInput) and a.report_line == ""
    report = plan.finished_report(a, FINGERPRINT)
    assert (report.status, report.worker, report.resumed) == (Status.BLURRED, "second-run", True)
    assert len(list((out / ".pii-blur" / "manifest").glob("a.jpg.*.json"))) == 1


def test_unusable_record_means_redo(finished_run):
    source, out = finished_run
    b = planned(source, out)["b.jpg"]
    record = next((out / ".pii-blur" / "manifest").glob("b.jpg.*.json"))
    record.write_text("{not json")
    assert plan.finished_report(b, FINGERPRINT) is None


def test_index_joins_only_this_runs_plan(finished_run):
    source, out = finished_run
    inputs = planned(source, out, run_id="two")
    lines = [report_of(f).to_json() for f in inputs.values()]
    assert plan.write_index(str(out), lines, "three") == 0         # another run's plan: nothing joined
    assert set(plan.read_index(str(out))) == {"a.jpg"}
    assert plan.write_index(str(out), lines, "two") == 3
    index = plan.read_index(str(out))
    assert index["c.jpg"][0] == manifest.record_key(inputs["c.jpg"].size, inputs["c.jpg"].version, FINGERPRINT)
    assert json.loads(index["c.jpg"][1])["path"] == inputs["c.jpg"].url


def test_unreadable_index_costs_reads_not_correctness(finished_run):
    source, out = finished_run
    (out / plan.INDEX_NAME).write_bytes(b"not gzip")
    a = planned(source, out)["a.jpg"]
    assert isinstance(a, plan.FinishedInput) and a.report_line == ""
    assert plan.finished_report(a, FINGERPRINT).resumed


def test_long_names_leave_room_for_the_key(tmp_path):
    name = "x" * (storage.NAME_MAX - len(".json") - 3) + ".jpg"
    source = tmp_path / "in"
    source.mkdir()
    (source / name).write_bytes(b"data")
    (item,) = storage.list_inputs(str(source), str(tmp_path / "out"))
    assert len(os.path.basename(manifest.record_url(item, FINGERPRINT))) <= storage.NAME_MAX
    finish(item)
    assert isinstance(plan.plan_inputs([item], str(tmp_path / "out"), plan.Planning(FINGERPRINT))[0],
                      plan.FinishedInput)


def test_finished_inputs_weigh_nothing_when_balancing(finished_run):
    from pii_blur.transforms.match import balanced_groups
    source, out = finished_run
    groups = balanced_groups(list(planned(source, out).values()), 2)
    assert sorted(len(g) for g in groups) == [1, 2]     # c.jpg alone: the finished two cost nothing
