"""Hostile input: 650+ bad and awkward files through the whole pipeline, in one run.

The corpus (tests/hostile_corpus.py) is generated, the pipeline runs once
in-process over all of it, and each test checks one promise against that
run: every input is reported exactly once; bad files fail or are skipped
with a reason and leave nothing in OUTPUT; good files in the same run are
copied byte for byte or really blurred. A last test runs the CLI under a
memory cap with a decompression bomb beside a normal photo.

Only the face detector runs here (plates go through the same read, decode
and write code), which keeps the run to well under a minute.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import skimage.data
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from conftest import ASTRONAUT_FACE_BOX, high_frequency_energy, jpeg_bytes
from hostile_corpus import FACE_SIDE, make_corpus, png_zero_bomb

from pii_blur import cli, imageio, manifest, pictures, pipeline, storage
from pii_blur.config import REPORT_NAME, BlurConfig
from pii_blur.geometry import box_upright_to_stored

# Pillow warns about every corrupt EXIF IFD it meets: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:(Corrupt EXIF data|Truncated File Read):UserWarning")

LOCAL = ["--runner=FnApiRunner", "--direct_running_mode=in_memory"]
PROCESSED = ("copied", "cleaned", "blurred")
# A face is blurred when the high-frequency energy left in its box is below
# this share of the original's (as in test_pipeline; measured: at most 0.1).
BLURRED_ENERGY_RATIO = 0.2


@dataclasses.dataclass
class CorpusRun:
    input: str
    output: str
    kinds: dict[str, str]            # relative path -> expected kind
    records: list[dict]              # report lines, summary excluded
    summary: dict
    seconds: float
    input_hashes: dict[str, str]     # relative path -> sha256 of every regular file in INPUT before the run

    def by_path(self) -> dict[str, dict]:
        prefix = "file://" + os.path.abspath(self.input) + "/"
        return {record["path"][len(prefix):]: record for record in self.records}

    def of_kind(self, *kinds: str) -> list[tuple[str, dict]]:
        records = self.by_path()
        return [(relative, records[relative]) for relative, kind in sorted(self.kinds.items()) if kind in kinds]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory) -> CorpusRun:
    root = tmp_path_factory.mktemp("hostile")
    source, output = str(root / "in"), str(root / "out")
    kinds = make_corpus(source, {"face": skimage.data.astronaut(), "plain": skimage.data.rocket()})
    before = _regular_file_hashes(source)
    args = pipeline.RunArgs(input=source, output=output, report=storage.join_url(output, REPORT_NAME),
                            config=BlurConfig(classes=("face",), threads=1), started_at=time.time())
    started = time.perf_counter()
    with TestPipeline(options=PipelineOptions(LOCAL), blocking=True) as p:
        pipeline.build(p, args)
    seconds = time.perf_counter() - started
    with open(args.report, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    print(f"\nhostile corpus: {len(kinds)} files in {seconds:.1f} s: {lines[-1]}")
    return CorpusRun(source, output, kinds, lines[:-1], lines[-1], seconds, before)


def _regular_file_hashes(folder: str) -> dict[str, str]:
    hashes = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    hashes[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return hashes


def test_corpus_is_big_and_varied(corpus_run):
    counts = collections.Counter(corpus_run.kinds.values())
    assert counts["failed"] + counts["skipped"] + counts["damaged"] >= 500
    assert counts["blurred"] >= 40 and counts["copied"] >= 20


def test_every_input_is_reported_exactly_once(corpus_run):
    reported = [relative for relative in corpus_run.by_path()]
    assert len(reported) == len(corpus_run.records) == corpus_run.summary["files"]
    assert sorted(reported) == sorted(corpus_run.kinds)


def test_bad_files_fail_or_are_skipped_with_a_reason(corpus_run):
    wrong = {relative: (kind, record["status"], record["reason"])
             for relative, record in corpus_run.of_kind("failed", "skipped")
             for kind in [corpus_run.kinds[relative]]
             if record["status"] != kind or not record["reason"] or record["output"]}
    assert not wrong


def test_damaged_files_fail_or_are_processed_like_any_image(corpus_run):
    """A bit flip may leave a file that decodes (no checksum in a JPEG's or a
    raw TIFF's pixel data); it is then an image like any other."""
    outcomes = collections.Counter(record["status"] for _, record in corpus_run.of_kind("damaged"))
    assert set(outcomes) <= {"failed", "copied", "blurred"}
    assert outcomes["failed"] >= 40          # the PNG ones: CRCs catch nearly every flip
    for _, record in corpus_run.of_kind("damaged"):
        assert record["reason"] if record["status"] == "failed" else record["output"]


@pytest.mark.parametrize("folder, kind, words", [
    ("empty/", "failed", "empty file"),
    ("truncated/", "failed", "truncated"),
    ("truncated/", "skipped", "not an image"),       # cut inside the magic bytes
    ("bombs/png-100000", "failed", "image too large"),
    ("bombs/png-zeros", "failed", "image too large: 20000x16000 pixels"),
    ("bombs/jpeg-65500", "failed", "image too large"),
    ("bombs/tiff-100000", "failed", "image too large"),
    ("bombs/png-ztxt", "failed", "Decompressed data too large"),
    ("unsupported/gif", "failed", "unsupported image format: gif"),
    ("unsupported/animated", "failed", "multi-frame"),
    ("unsupported/multipage", "failed", "multi-frame"),
    ("not-images/", "skipped", "not an image"),
    ("links/to-outside", "failed", "symbolic link, not followed"),
    ("links/loop-a", "failed", "symbolic link, not followed"),
    ("links/fifo", "failed", "not a regular file (FIFO)"),
])
def test_reasons_say_what_is_wrong(corpus_run, folder, kind, words):
    reasons = {relative: record["reason"] for relative, record in corpus_run.by_path().items()
               if relative.startswith(folder) and corpus_run.kinds[relative] == kind}
    assert reasons
    assert not {relative: reason for relative, reason in reasons.items() if words not in reason}


def test_output_holds_exactly_the_processed_files(corpus_run):
    """Nothing failed, skipped, temporary, or from outside INPUT reaches OUTPUT."""
    written = set()
    for folder, subfolders, names in os.walk(corpus_run.output):
        subfolders[:] = [name for name in subfolders if name != ".pii-blur"]
        written.update(os.path.relpath(os.path.join(folder, name), corpus_run.output) for name in names)
    processed = {relative for relative, record in corpus_run.by_path().items() if record["status"] in PROCESSED}
    assert written == processed | {REPORT_NAME}
    assert not any(os.path.islink(os.path.join(corpus_run.output, relative)) for relative in written)


def test_good_files_end_as_expected(corpus_run):
    wrong = {relative: (corpus_run.kinds[relative], record["status"], record["reason"])
             for relative, record in corpus_run.of_kind("copied", "cleaned", "blurred")
             if record["status"] != corpus_run.kinds[relative]}
    assert not wrong


def test_no_input_is_changed(corpus_run):
    assert _regular_file_hashes(corpus_run.input) == corpus_run.input_hashes


def _pictures_anywhere(data: bytes) -> list[bytes]:
    """Every JPEG or PNG anywhere in a file's bytes after its first few, raw or
    base64 (at any of the four alignments), whatever structure holds it:
    an independent search that knows nothing of containers."""
    found = []
    for match in re.finditer(rb"\xff\xd8\xff|\x89PNG\r\n\x1a\n", data[16:]):
        found.append(data[16 + match.start():])
    text = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    for magic in (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"):
        for shift in range(3):
            encoded = base64.b64encode(b"\x00" * shift + magic)[4 if shift else 0:][:4]
            for match in re.finditer(re.escape(encoded), text):
                chunk = text[match.start() - (match.start() % 4 if shift else 0):]
                found.append(base64.b64decode(chunk[:len(chunk) - len(chunk) % 4], validate=False))
    return found


def test_no_picture_of_a_face_survives_in_any_output(corpus_run, face_detector):
    """0 leaks: every picture found anywhere in every output is decoded. It
    must be a faithful copy of the output's own pixels (the rebuilt EXIF
    thumbnail: it shows the blur, which the detector may still call a face),
    and any other picture must show no face."""
    leaks, checked = {}, 0
    for relative, record in corpus_run.by_path().items():
        if record["status"] not in PROCESSED or record["status"] == "copied":
            continue
        with open(os.path.join(corpus_run.output, relative), "rb") as handle:
            data = handle.read()
        own = imageio.decode(data).rgb8()
        for picture in _pictures_anywhere(data):
            pixels = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR)
            if pixels is None:
                continue
            checked += 1
            rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
            if pictures.shows_the_photo(picture, own):
                continue
            faces = [d for d in face_detector.detect([rgb])[0] if d.score >= face_detector.threshold]
            leaks.setdefault(relative, []).append((rgb.shape, len(faces)))
    print(f"\nleak check: {checked} embedded pictures decoded in the outputs")
    assert not leaks


def test_cleaned_outputs_keep_their_pixels_and_lose_the_stale_pictures(corpus_run):
    cleaned = corpus_run.of_kind("cleaned")
    assert len(cleaned) >= 13
    for relative, record in cleaned:
        with open(os.path.join(corpus_run.input, relative), "rb") as source, \
                open(os.path.join(corpus_run.output, relative), "rb") as output:
            before, after = source.read(), output.read()
        assert np.array_equal(imageio.decode(before).pixels, imageio.decode(after).pixels), relative
        assert any(line.startswith("stale: ") for line in record["pictures"]), relative
        assert [p for p in pictures.find(after) if not pictures.shows_the_photo(p.data, imageio.decode(after).rgb8())] == []


def test_copies_are_byte_identical(corpus_run):
    for relative, record in corpus_run.of_kind("copied", "damaged"):
        if record["status"] == "copied":
            with open(os.path.join(corpus_run.input, relative), "rb") as source, \
                    open(os.path.join(corpus_run.output, relative), "rb") as copy:
                assert source.read() == copy.read(), relative


def test_every_face_is_blurred_where_it_is_stored(corpus_run):
    """CMYK, YCCK, 16-bit, grey, alpha, palette, WebP, TIFF, all 8 EXIF
    orientations, absurd EXIF, odd names: the face's box in the stored pixels
    loses its detail in the output."""
    upright_box = tuple(v * FACE_SIDE / 512 for v in ASTRONAUT_FACE_BOX)
    unblurred = {}
    for relative, record in corpus_run.of_kind("blurred"):
        with open(os.path.join(corpus_run.input, relative), "rb") as handle:
            source = imageio.decode(handle.read())
        with open(os.path.join(corpus_run.output, relative), "rb") as handle:
            blurred = imageio.decode(handle.read())
        turned = source.orientation > 4     # orientations 5-8 swap width and height
        upright_w, upright_h = (source.height, source.width) if turned else (source.width, source.height)
        box = box_upright_to_stored(upright_box, source.orientation, upright_w, upright_h)
        ratio = high_frequency_energy(blurred.rgb8(), box) / high_frequency_energy(source.rgb8(), box)
        if ratio >= BLURRED_ENERGY_RATIO:
            unblurred[relative] = round(ratio, 3)
    assert not unblurred


def test_summary_counts_add_up_and_the_run_is_quick(corpus_run):
    statuses = collections.Counter(record["status"] for record in corpus_run.records)
    assert {k: corpus_run.summary[k] for k in statuses} == dict(statuses)
    assert corpus_run.seconds < 240     # about 30 s on 2 shared cores; a hang would be far longer


# --------------------------------------------------------------------------- arguments and listing


@pytest.mark.parametrize("output", ["in/out", "in", "in/sub/../out"])
def test_output_inside_input_is_refused_at_start(tmp_path, monkeypatch, capsys, output):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["in", output])
    assert exit_info.value.code == 2 and "inside" in capsys.readouterr().err


def test_output_reached_through_a_link_into_input_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in" / "blurred").mkdir(parents=True)
    os.symlink(tmp_path / "in" / "blurred", tmp_path / "elsewhere")
    with pytest.raises(SystemExit):
        cli.parse_args(["in", "elsewhere"])
    assert "inside" in capsys.readouterr().err


def test_one_glob_keeps_identical_names_in_different_folders_apart(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        (tmp_path / "in" / folder / "photo.jpg").write_bytes(b"x")
    listed = storage.list_inputs(str(tmp_path / "in" / "*" / "photo.jpg"), str(tmp_path / "out"))
    assert [i.relative_path for i in listed] == ["a/photo.jpg", "b/photo.jpg"]
    assert len({i.output_url for i in listed}) == len({i.manifest_url for i in listed}) == 2


def test_the_cli_takes_a_single_input(tmp_path, monkeypatch, capsys):
    """Two globs cannot be given, so two inputs never share a relative path in one run."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["in/a/*.jpg", "in/b/*.jpg", "out"])
    assert exit_info.value.code == 2 and "MIN_PERCENTAGE_PROBABILITY" in capsys.readouterr().err


def test_the_input_itself_may_be_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "photo.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "real", tmp_path / "folder-link")
    os.symlink(tmp_path / "real" / "photo.jpg", tmp_path / "file-link.jpg")
    [in_folder] = storage.list_inputs(str(tmp_path / "folder-link"), str(tmp_path / "out"))
    [named] = storage.list_inputs(str(tmp_path / "file-link.jpg"), str(tmp_path / "out"))
    assert storage.read_bytes(in_folder.url) == storage.read_bytes(named.url) == b"x"
    assert named.relative_path == "file-link.jpg"


def test_long_names_get_a_manifest_name_that_fits(tmp_path):
    (tmp_path / "in").mkdir()
    name = "é" * 125 + ".jpg"      # 254 bytes: the longest name most file systems allow
    (tmp_path / "in" / name).write_bytes(b"x")
    [listed] = storage.list_inputs(str(tmp_path / "in"), str(tmp_path / "out"))
    storage.write_atomic(listed.output_url, b"y")
    storage.write_atomic(listed.manifest_url, b"{}")
    assert (tmp_path / "out" / name).read_bytes() == b"y"


def test_outputs_keep_16_bits_and_cmyk(corpus_run):
    """Case 12 and 13: 16-bit PNG and TIFF stay 16-bit; CMYK JPEG stays CMYK (with its profile, if any)."""
    records = corpus_run.by_path()
    for relative in ("good/face-rgb-16bit.png", "good/face-grey-16bit.png", "good/face-grey-16bit.tif"):
        assert records[relative]["status"] == "blurred"
        with open(os.path.join(corpus_run.output, relative), "rb") as handle:
            assert imageio.decode(handle.read()).pixels.dtype == np.uint16, relative
    with open(os.path.join(corpus_run.output, "good/face-cmyk.jpg"), "rb") as handle:
        assert imageio.decode(handle.read()).source.mode == "CMYK"


def _cli(arguments: list[str], cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pii_blur.cli", *arguments], capture_output=True, text=True,
                          timeout=300, check=False, cwd=cwd)


def test_a_report_path_on_an_input_is_refused_and_the_input_kept(tmp_path, astronaut):
    """Case 4: --report naming an input (or a link to one) exits 2 and writes nothing."""
    (tmp_path / "in").mkdir()
    photo = jpeg_bytes(astronaut)
    (tmp_path / "in" / "a.jpg").write_bytes(photo)
    os.symlink(tmp_path / "in" / "a.jpg", tmp_path / "report-link.jsonl")
    for report in (tmp_path / "in" / "a.jpg", tmp_path / "in" / "new.jsonl", tmp_path / "report-link.jsonl"):
        result = _cli([str(tmp_path / "in"), str(tmp_path / "out"), "--report", str(report)])
        assert result.returncode == 2 and "--report" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "in" / "a.jpg").read_bytes() == photo and not (tmp_path / "out").exists()


def test_links_planted_in_output_are_never_written_through(tmp_path, astronaut):
    """Case 5: OUTPUT/y -> INPUT/y and OUTPUT/a.jpg -> INPUT/a.jpg; the run
    reports both as failed and leaves every input as it was."""
    (tmp_path / "in" / "y").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    photo, other = jpeg_bytes(astronaut), jpeg_bytes(skimage.data.rocket()[:200, :200])
    (tmp_path / "in" / "y" / "face.jpg").write_bytes(photo)
    (tmp_path / "in" / "a.jpg").write_bytes(other)
    (tmp_path / "in" / "z").mkdir()
    (tmp_path / "in" / "z" / "face.jpg").write_bytes(photo)
    (tmp_path / "elsewhere").mkdir()
    os.symlink("../in/y", tmp_path / "out" / "y")
    os.symlink("../in/a.jpg", tmp_path / "out" / "a.jpg")
    os.symlink("../elsewhere", tmp_path / "out" / "z")
    result = _cli([str(tmp_path / "in"), str(tmp_path / "out"), "--classes", "face", "--workers", "1"])
    assert result.returncode == 1, result.stderr[-2000:]
    assert (tmp_path / "in" / "y" / "face.jpg").read_bytes() == photo
    assert (tmp_path / "in" / "a.jpg").read_bytes() == other
    with open(tmp_path / "out" / REPORT_NAME, encoding="utf-8") as handle:
        records = {r["path"].rsplit("/in/", 1)[1]: r for r in map(json.loads, handle) if "path" in r}
    for relative in ("y/face.jpg", "a.jpg"):      # onto an input: refused before reading
        assert records[relative]["status"] == "failed" and "overwrite the input" in records[relative]["reason"]
    assert records["z/face.jpg"]["status"] == "failed" and "symbolic link" in records["z/face.jpg"]["reason"]
    assert sorted(os.listdir(tmp_path / "in" / "y")) == ["face.jpg"] and os.listdir(tmp_path / "elsewhere") == []


def test_write_atomic_refuses_links_below_the_root(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "target", tmp_path / "out" / "sub")
    with pytest.raises(storage.OutsideOutput):
        storage.write_atomic(str(tmp_path / "out" / "sub" / "deeper" / "x.jpg"), b"y", root=str(tmp_path / "out"))
    assert os.listdir(tmp_path / "target") == []
    storage.write_atomic(str(tmp_path / "out" / "new" / "x.jpg"), b"y", root=str(tmp_path / "out"))
    assert (tmp_path / "out" / "new" / "x.jpg").read_bytes() == b"y"


@pytest.mark.parametrize("argv, words", [
    (["in", ""], "OUTPUT is empty"),                       # case 6: an unset shell variable
    (["", "out"], "INPUT is empty"),
    (["in", "out", "--report", ""], "--report is empty"),
    (["missing", "out"], "INPUT not found"),               # case 14
    (["in", "out", "--max-pixels", "-5"], "--max-pixels must be at least 1"),
    (["in", "file/out"], "cannot be written"),             # OUTPUT under a file: nothing can be created there
])
def test_bad_locations_exit_2_with_one_line(tmp_path, argv, words):
    (tmp_path / "in").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    result = _cli(argv, cwd=tmp_path)
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["file", "in"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_exits_2_with_one_line(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir(mode=0o555)
    result = _cli([str(tmp_path / "in"), str(tmp_path / "out")])
    assert result.returncode == 2 and "cannot be written" in result.stderr and "Traceback" not in result.stderr


def test_an_unreadable_folder_becomes_a_failed_line(tmp_path, monkeypatch):
    """Case 7 (as root no folder is unreadable, so the listing error is made by hand)."""
    for folder in ("open", "locked"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        (tmp_path / "in" / folder / "photo.jpg").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    listed = {i.relative_path: i for i in storage.list_inputs(str(tmp_path / "in"), str(tmp_path / "out"))}
    assert set(listed) == {"open/photo.jpg", "locked"}
    assert listed["locked"].problem == "folder could not be listed: Permission denied"
    assert not listed["open/photo.jpg"].problem


def test_an_input_folder_named_like_a_glob_is_taken_literally(tmp_path):
    """Case 8: a folder called photos[1] is a folder, not a pattern."""
    (tmp_path / "photos[1]").mkdir()
    (tmp_path / "photos[1]" / "a.jpg").write_bytes(b"x")
    (tmp_path / "photos1").mkdir()
    (tmp_path / "photos1" / "b.jpg").write_bytes(b"x")
    assert [i.relative_path for i in storage.list_inputs(str(tmp_path / "photos[1]"), str(tmp_path / "out"))] \
        == ["a.jpg"]
    args, _ = cli.parse_args([str(tmp_path / "photos[1]"), str(tmp_path / "out")])
    assert args.input == str(tmp_path / "photos[1]")


def test_content_written_back_with_its_old_mtime_is_a_new_version(tmp_path):
    """Case 10: same size, `touch -r` restores the mtime; the ctime still moves."""
    (tmp_path / "in").mkdir()
    photo = tmp_path / "in" / "a.jpg"
    photo.write_bytes(b"1" * 100)
    [before] = storage.list_inputs(str(tmp_path / "in"), str(tmp_path / "out"))
    stamp = os.stat(photo)
    time.sleep(0.02)
    photo.write_bytes(b"2" * 100)
    os.utime(photo, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    [after] = storage.list_inputs(str(tmp_path / "in"), str(tmp_path / "out"))
    assert before.size == after.size and before.version != after.version


@pytest.mark.parametrize("record", [b"[]", b"{}", b'{"size": 3, "version": 1, "fingerprint": 2, "report": []}',
                                    b"\xff\xfe", b"null", b'"text"', "folder"])
def test_a_malformed_manifest_record_means_redo(tmp_path, record):
    """Case 11: any record of the wrong shape, or a folder in its place, is ignored."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"x")
    [listed] = storage.list_inputs(str(tmp_path / "in"), str(tmp_path / "out"))
    path = storage._url_to_fs(listed.manifest_url)[1]
    os.makedirs(path if record == "folder" else os.path.dirname(path))
    if record != "folder":
        with open(path, "wb") as handle:
            handle.write(record)
    assert manifest.load_current(listed, "fingerprint") is None


# --------------------------------------------------------------------------- memory cap


def _peak_virtual_memory_bytes() -> str:
    """Python for a child that runs the CLI, then reports its peak address space."""
    return ("import atexit, runpy, sys\n"
            "def report():\n"
            "    for line in open('/proc/self/status'):\n"
            "        if line.startswith('VmPeak:'):\n"
            "            print('VMPEAK', int(line.split()[1]) * 1024, file=sys.stderr)\n"
            "atexit.register(report)\n"
            "sys.argv = ['pii-blur'] + sys.argv[1:]\n"
            "runpy.run_module('pii_blur.cli', run_name='__main__')\n")


def _run_cli(arguments: list[str], address_space: int | None = None) -> subprocess.CompletedProcess:
    def cap():
        import resource  # Unix only; runs in the child before exec

        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    # Fewer malloc arenas and threads: the address space then tracks memory in use.
    env = dict(os.environ, MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", _peak_virtual_memory_bytes()] + arguments, env=env,
                          preexec_fn=cap, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_a_decompression_bomb_cannot_take_a_capped_worker_down(tmp_path, astronaut):
    """The cap is the address space a normal run needs plus HEADROOM, and
    decoding the bomb would need far more than HEADROOM: so if the bomb were
    decoded, the worker would die (MemoryError or a crash) instead of
    reporting it. It reports it, and blurs the photo next to it."""
    headroom = 768 << 20
    normal, both = tmp_path / "normal", tmp_path / "both"
    for folder in (normal, both):
        folder.mkdir()
        (folder / "face.jpg").write_bytes(jpeg_bytes(astronaut))
    width, height = 20_000, 16_000
    (both / "bomb.png").write_bytes(png_zero_bomb(width, height))
    assert width * height * 3 > headroom     # the RGB copy for the detector alone
    assert width * height > imageio.MAX_PIXELS

    baseline = _run_cli([str(normal), str(tmp_path / "out-normal"), "--workers", "1"])
    assert baseline.returncode == 0, baseline.stderr[-2000:]
    peak = int(baseline.stderr.split("VMPEAK")[-1].split()[0])

    print(f"\nmemory cap: normal run's peak address space {peak >> 20} MiB, cap {(peak + headroom) >> 20} MiB")
    capped = _run_cli([str(both), str(tmp_path / "out-both"), "--workers", "1"], address_space=peak + headroom)
    assert capped.returncode == 1, capped.stderr[-3000:]          # 1: a file failed; not a crash
    assert "2 files: 0 copied, 0 cleaned of stale previews, 1 blurred, 0 skipped, 1 failed" in capped.stdout
    with open(tmp_path / "out-both" / REPORT_NAME, encoding="utf-8") as handle:
        records = {os.path.basename(r["path"]): r for r in map(json.loads, handle) if "path" in r}
    assert records["bomb.png"]["status"] == "failed" and "too large" in records["bomb.png"]["reason"]
    assert records["face.jpg"]["status"] == "blurred"
    assert not (tmp_path / "out-both" / "bomb.png").exists()
