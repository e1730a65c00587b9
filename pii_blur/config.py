"""The run's settings, parsed once by the CLI and handed to every step."""

from __future__ import annotations

import dataclasses

from pii_blur.imageio import MAX_PIXELS
from pii_blur.manifest import settings_fingerprint
from pii_blur.models.base import DetectorConfig

# Which registered detector finds each class by default.
DEFAULT_BACKENDS = {"face": "onnx-centerface", "plate": "onnx-ppocr-plate"}
DEFAULT_CLASSES = ("face", "plate")
REPORT_NAME = "pii-blur-report.jsonl"
MAX_FILE_BYTES = 1 << 30  # 1 GiB: no photo is larger; a video named .jpg would be


@dataclasses.dataclass(frozen=True)
class BlurConfig:
    """Everything a worker needs to process images.

    classes: labels to find and blur, e.g. ("face", "plate").
    min_probability: MIN_PERCENTAGE_PROBABILITY / 100.
    threads: ONNX Runtime threads per model per worker (0 = let it choose).
    force: redo every input, even those a previous run finished.
    projection: auto | equirectangular | perspective (see anonymize.projection_of).
    max_pixels: larger images fail, checked from the header before decoding.
    max_file_bytes: larger files fail before they are read.
    """

    classes: tuple[str, ...] = DEFAULT_CLASSES
    min_probability: float = 0.4
    threads: int = 0
    force: bool = False
    projection: str = "auto"
    max_pixels: int = MAX_PIXELS
    max_file_bytes: int = MAX_FILE_BYTES

    def fingerprint(self) -> str:
        """Identifies the settings that change outputs (see manifest.py)."""
        return settings_fingerprint(self.classes, self.min_probability, self.projection)

    def backends(self) -> list[str]:
        """Registered detector names needed for `classes`, without repeats.

        Raises:
            ValueError: a class has no backend.
        """
        unknown = [c for c in self.classes if c not in DEFAULT_BACKENDS]
        if unknown:
            raise ValueError(f"no detector for class(es) {unknown}; supported: {sorted(DEFAULT_BACKENDS)}")
        return list(dict.fromkeys(DEFAULT_BACKENDS[c] for c in self.classes))

    def detector_config(self) -> DetectorConfig:
        return DetectorConfig(min_probability=self.min_probability, threads=self.threads)
