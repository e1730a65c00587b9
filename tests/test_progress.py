import fcntl
import io
import logging
import os
import struct
import termios
import time

from pii_blur import progress


def test_ticks_from_several_writers_add_up(tmp_path):
    for _ in range(5):
        progress.tick(str(tmp_path))
    (tmp_path / "other-worker").write_bytes(b"...")
    assert progress.finished_count(str(tmp_path)) == 8
    assert progress.finished_count(str(tmp_path / "missing")) == 0


def test_bar_on_a_terminal_reaches_the_total_and_removes_its_folder(monkeypatch):
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.05)
    folder = progress.make_progress_dir()
    main_fd, terminal_fd = os.openpty()
    fcntl.ioctl(terminal_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # rows, columns
    with os.fdopen(terminal_fd, "w") as terminal:
        assert terminal.isatty()
        with progress.ProgressMonitor(folder, lambda: 3, stream=terminal):
            for _ in range(3):
                progress.tick(folder)
    drawn = os.read(main_fd, 65536).decode()
    os.close(main_fd)
    assert "3/3" in drawn and "100%" in drawn
    assert not os.path.exists(folder)


def test_log_lines_when_not_a_terminal(monkeypatch, caplog):
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.05)
    folder = progress.make_progress_dir()
    progress.tick(folder)
    with caplog.at_level(logging.INFO, logger="pii_blur.progress"):
        with progress.ProgressMonitor(folder, lambda: 4, stream=io.StringIO()):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not _logged(caplog, "progress: 1/4 (25%) files"):
                time.sleep(0.05)
    assert _logged(caplog, "progress: 1/4 (25%) files")


def _logged(caplog, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


def test_the_pipeline_ticks_once_per_input_whatever_its_fate(tmp_path):
    from apache_beam import combiners
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to
    import skimage.data

    from conftest import jpeg_bytes
    from pii_blur import pipeline
    from pii_blur.config import BlurConfig

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "rocket.jpg").write_bytes(jpeg_bytes(skimage.data.rocket()))   # copied
    (folder / "empty.jpg").write_bytes(b"")                                  # failed
    (folder / "notes.jpg").write_bytes(b"not a picture")                     # skipped
    ticks = tmp_path / "ticks"
    ticks.mkdir()
    args = pipeline.RunArgs(input=str(folder), output=str(tmp_path / "out"), report=str(tmp_path / "report.jsonl"),
                            config=BlurConfig(threads=1, progress_dir=str(ticks)), started_at=0.0)
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"]),
                      blocking=True) as p:
        assert_that(pipeline.build(p, args) | combiners.Count.Globally(), equal_to([3]))
    assert progress.finished_count(str(ticks)) == 3
