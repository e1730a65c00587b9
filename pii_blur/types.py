"""Typed records passed between pipeline steps and written to the report."""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional


class Status(str, enum.Enum):
    """What happened to one input file."""

    COPIED = "copied"    # nothing found: output is a byte-identical copy
    CLEANED = "cleaned"  # nothing found, but stale embedded pictures: output has them removed, pixels untouched
    BLURRED = "blurred"  # something found: output re-encoded with blur
    SKIPPED = "skipped"  # not an image (by content): no output
    FAILED = "failed"    # could not be processed safely: no output


@dataclasses.dataclass(frozen=True)
class Detection:
    """One object found in an image.

    box is [x1, y1, x2, y2] in pixels of the image as stored (before EXIF
    orientation is applied), top-left inclusive, bottom-right exclusive.
    On an equirectangular panorama, boxes holds the footprint's boxes (two
    for an object across the 0/360 degree seam, box being the first) and
    yaw_deg/pitch_deg its centre direction (see sphere.py).
    """

    label: str
    score: float
    box: tuple[float, float, float, float]
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    yaw_deg: Optional[float] = None
    pitch_deg: Optional[float] = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @classmethod
    def from_json(cls, record: dict) -> "Detection":
        boxes = tuple(tuple(b) for b in record.get("boxes") or ())
        return cls(record["label"], record["score"], tuple(record["box"] if "box" in record else boxes[0]),
                   boxes=boxes,
                   yaw_deg=record.get("yaw_deg"), pitch_deg=record.get("pitch_deg"))

    def to_json(self) -> dict:
        record = {
            "label": self.label,
            "score": round(float(self.score), 4),
            "box": [int(round(v)) for v in self.box],
        }
        if self.yaw_deg is not None:
            record["boxes"] = [[int(round(v)) for v in box] for box in self.boxes]
            record["yaw_deg"] = round(self.yaw_deg, 2)
            record["pitch_deg"] = round(self.pitch_deg, 2)
        return record


@dataclasses.dataclass(frozen=True)
class InputFile:
    """An input found by matching: its URL, its version, and where its output goes.

    size: bytes, as listed. version: the store's etag, or else its
    modification and change times, as a string (storage.file_version).
    manifest_url: where the record of the finished output is kept, for
    resuming. output_root: OUTPUT, below which writes never follow links.
    problem: why this entry cannot be processed, found while listing (a
    folder that could not be read, a reserved name), or ''.
    """

    url: str
    relative_path: str
    output_url: str
    manifest_url: str = ""
    size: Optional[int] = None
    version: Optional[str] = None
    problem: str = ""
    output_root: str = ""


@dataclasses.dataclass
class FileReport:
    """One line of the report: the fate of one input file.

    pictures: what was done to the embedded pictures and metadata of the
    output (e.g. 'APP1 XMP: jpeg (base64, 5120 bytes) removed'); for a
    `cleaned` file, also the stale pictures that made it so.
    """

    path: str
    status: Status
    output: Optional[str] = None
    reason: str = ""
    detections: list[Detection] = dataclasses.field(default_factory=list)
    near_misses: list[Detection] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    size_bytes: Optional[int] = None
    encoding: str = ""
    projection: str = ""
    worker: str = ""
    resumed: bool = False
    pictures: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "status": self.status.value,
            "output": self.output,
            "reason": self.reason,
            "size_bytes": self.size_bytes,
            "detections": [d.to_json() for d in self.detections],
            "near_misses": [d.to_json() for d in self.near_misses],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "encoding": self.encoding,
            "projection": self.projection,
            "worker": self.worker,
            "resumed": self.resumed,
            "pictures": list(self.pictures),
        }

    @classmethod
    def from_json(cls, record: dict) -> "FileReport":
        return cls(path=record["path"], status=Status(record["status"]), output=record.get("output"),
                   reason=record.get("reason", ""),
                   detections=[Detection.from_json(d) for d in record.get("detections", [])],
                   near_misses=[Detection.from_json(d) for d in record.get("near_misses", [])],
                   timings=record.get("timings", {}), size_bytes=record.get("size_bytes"),
                   encoding=record.get("encoding", ""), projection=record.get("projection", ""),
                   worker=record.get("worker", ""),
                   resumed=record.get("resumed", False), pictures=list(record.get("pictures", [])))
