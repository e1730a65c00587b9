"""Small helpers every step uses to end an input with a report."""

from __future__ import annotations

import os
import socket

from pii_blur import imageio
from pii_blur.types import FileReport, InputFile, Status

NAMESPACE = "pii_blur"


def worker_id() -> str:
    """host:pid of the process doing the work, for the audit trail."""
    return f"{socket.gethostname()}:{os.getpid()}"


def describe(error: Exception) -> str:
    if isinstance(error, imageio.ImageError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def failed(input_file: InputFile, reason: str, **fields) -> FileReport:
    return FileReport(path=input_file.url, status=Status.FAILED, reason=reason, worker=worker_id(), **fields)
