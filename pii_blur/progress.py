"""Progress of a local run, shown by the launching process while workers do the work.

Local workers are separate processes, so they cannot draw on the launcher's
terminal. Each worker appends one byte per finished input (whatever its fate)
to its own file in a scratch folder; the launcher sums those files' sizes
every POLL_SECONDS and shows a tqdm bar on a terminal, or a plain log line
every LOG_SECONDS otherwise. The total comes from listing the input in a
background thread, so a slow listing never delays the run. No Beam here.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import Callable, Optional, TextIO

LOG = logging.getLogger("pii_blur.progress")
POLL_SECONDS = 0.5
LOG_SECONDS = 30.0


def make_progress_dir() -> str:
    """A new local scratch folder for one run's ticks."""
    return tempfile.mkdtemp(prefix="pii-blur-progress-")


def tick(progress_dir: str) -> None:
    """Count one finished input (called by workers; one O_APPEND write, safe across threads).

    Best effort: a tick that cannot be written only makes the display lag.
    """
    path = os.path.join(progress_dir, f"{socket.gethostname()}-{os.getpid()}")
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(descriptor, b".")
        finally:
            os.close(descriptor)
    except OSError as error:
        LOG.debug("progress: could not tick %s: %s", path, error)


def finished_count(progress_dir: str) -> int:
    """Inputs finished so far: the sum of the tick files' sizes."""
    try:
        with os.scandir(progress_dir) as entries:
            return sum(entry.stat().st_size for entry in entries)
    except FileNotFoundError:
        return 0


class ProgressMonitor:
    """Shows a run's progress from its tick folder until stopped; a context manager.

    count_inputs: returns the number of inputs (called once, in a thread).
    stream: where to draw; a tqdm bar when it is a terminal, else log lines.
    The tick folder is removed on exit.
    """

    def __init__(self, progress_dir: str, count_inputs: Callable[[], int], stream: Optional[TextIO] = None):
        self.progress_dir = progress_dir
        self.count_inputs = count_inputs
        self.stream = stream or sys.stderr
        self.total: Optional[int] = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "ProgressMonitor":
        for target in (self._find_total, self._show):
            thread = threading.Thread(target=target, daemon=True, name=f"pii-blur-progress-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        shutil.rmtree(self.progress_dir, ignore_errors=True)

    def _find_total(self) -> None:
        try:
            self.total = self.count_inputs()
        except Exception as error:  # noqa: BLE001 - the run itself reports a bad input
            LOG.debug("progress: could not count the inputs: %s", error)

    def _show(self) -> None:
        if self.stream.isatty():
            self._show_bar()
        else:
            self._show_log_lines()

    def _show_bar(self) -> None:
        from tqdm import tqdm

        with tqdm(total=None, unit="file", file=self.stream, desc="pii-blur", dynamic_ncols=True) as bar:
            while True:
                stopping = self._stop.wait(POLL_SECONDS)
                if self.total is not None and bar.total != self.total:
                    bar.total = self.total
                    bar.refresh()
                bar.update(finished_count(self.progress_dir) - bar.n)
                if stopping:
                    return

    def _show_log_lines(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(LOG_SECONDS):
            done = finished_count(self.progress_dir)
            elapsed = time.monotonic() - started
            of_total = f"/{self.total} ({100 * done / max(self.total, 1):.0f}%)" if self.total is not None else ""
            LOG.info("progress: %d%s files in %.0f s, %.2f files/s", done, of_total, elapsed,
                     done / max(elapsed, 1e-9))
