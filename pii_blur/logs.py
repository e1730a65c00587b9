"""Where a run's log records go: a quiet terminal, and a full log file for bug reports.

The terminal gets pii-blur's own warnings and progress lines, nothing from
Beam, gRPC or the model libraries (their worker chatter means nothing to a
user) unless --verbose asks for it. Every record at INFO and above, from
every library, also goes to a log file that is kept under
OUTPUT/.pii-blur/logs/ at the end of the run.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time

from pii_blur import storage

FORMAT = "%(levelname)s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOGS_FOLDER = f"{storage.RUN_FOLDER}/logs"


class _ForTheTerminal(logging.Filter):
    """pii-blur's warnings and progress lines; with verbose, also its info and every library's warnings."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name.startswith("pii_blur")
        if self.verbose:
            return ours or record.levelno >= logging.WARNING
        return ours and (record.levelno >= logging.WARNING or record.name == "pii_blur.progress")


_HANDLERS: list[logging.Handler] = []


def configure(verbose: bool = False) -> str:
    """Send log records to the terminal (stderr) and to a new local log file; returns its path.

    verbose: the terminal also shows every library's warnings and pii-blur's info.
    """
    handle, path = tempfile.mkstemp(prefix="pii-blur-", suffix=".log")
    os.close(handle)
    root = logging.getLogger()
    while _HANDLERS:   # a second run in the same process replaces the first one's
        handler = _HANDLERS.pop()
        root.removeHandler(handler)
        handler.close()
    for handler in list(root.handlers):   # what logging.basicConfig gave the root, if a library set it off
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.stdout):
            root.removeHandler(handler)
    root.setLevel(logging.INFO)
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setFormatter(logging.Formatter(FORMAT))
    terminal.addFilter(_ForTheTerminal(verbose))
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(FILE_FORMAT))
    _HANDLERS.extend([terminal, to_file])
    for handler in _HANDLERS:
        root.addHandler(handler)
    return path


def keep(log_path: str, output_root: str) -> str:
    """Copy the run's log file to OUTPUT/.pii-blur/logs/run-<UTC time>.log and delete the local one.

    Returns the kept log's URL, or '' if it could not be written (the run's
    outputs are already safe; losing the log only costs the bug report).
    """
    for handler in _HANDLERS:
        handler.flush()
    name = time.strftime("run-%Y%m%dT%H%M%SZ.log", time.gmtime())
    url = storage.join_url(output_root, f"{LOGS_FOLDER}/{name}")
    try:
        with open(log_path, "rb") as handle:
            storage.write_atomic(url, handle.read(), root=output_root)
    except OSError:
        return ""
    os.remove(log_path)
    return url
