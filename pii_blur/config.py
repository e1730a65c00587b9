"""The run's settings, parsed once by the CLI and handed to every step."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Optional

from pii_blur.anonymize import pano_search_overrides
from pii_blur.blur import DEFAULT_MODE
from pii_blur.imageio import MAX_PIXELS
from pii_blur.manifest import settings_fingerprint
from pii_blur.models.base import (DEFAULT_PRECISION, DetectorConfig, available_detectors, create_detector,
                                  needs_model_file, precision_of)
from pii_blur.models.model_config import ModelSpec, pin_model_files

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
    device: cpu | cuda, for every detector.
    models: the --models config, one spec per model with the classes it finds
        (model_config.load_model_config; pinned to its files' sha256 at start-up).
        A class without one uses DEFAULT_BACKENDS.
    mode: how found objects are covered: blur | pixelate | fill (pii_blur.blur.MODES).
    precision: int8 | fp32 weights for the built-in ONNX models, or None for
        each model's measured default (models.base.DEFAULT_PRECISION).
    progress_dir: local folder where workers count finished inputs for the
        launcher's progress display (pii_blur.progress), or None. Not an
        output setting: it is not in the fingerprint.
    """

    classes: tuple[str, ...] = DEFAULT_CLASSES
    min_probability: float = 0.4
    threads: int = 0
    force: bool = False
    projection: str = "auto"
    max_pixels: int = MAX_PIXELS
    max_file_bytes: int = MAX_FILE_BYTES
    device: str = "cpu"
    models: tuple[ModelSpec, ...] = ()
    mode: str = DEFAULT_MODE
    precision: Optional[str] = None
    progress_dir: Optional[str] = None

    def fingerprint(self) -> str:
        """Identifies the settings (and code: manifest.core_source_digest) that change outputs.

        The models used (backend, content hash, settings) count too; without
        --models the value is what it was before models were configurable.
        """
        base = settings_fingerprint(self.classes, self.min_probability, self.projection, self.mode,
                                    self.precisions(), pano_search_overrides())
        used = self.used_models()
        if not used:
            return base
        text = json.dumps([base, sorted((s.to_json() for s in used), key=json.dumps)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def precisions(self) -> dict[str, str]:
        """The precision each built-in ONNX model runs at, chosen or default."""
        return {name: precision_of(name, self.precision) for name in sorted(DEFAULT_PRECISION)}

    def used_models(self) -> tuple[ModelSpec, ...]:
        """The configured models that find at least one of `classes`, each limited to those classes."""
        used = []
        for spec in self.models:
            mine = tuple(c for c in spec.classes if c in self.classes)
            if mine:
                used.append(dataclasses.replace(spec, classes=mine))
        return tuple(used)

    def backend_of(self, label: str) -> Optional[str]:
        """The registered detector name that finds `label`, or None."""
        for spec in self.models:
            if label in spec.classes:
                return spec.backend
        return DEFAULT_BACKENDS.get(label)

    def backends(self) -> list[str]:
        """Registered detector names needed for `classes`, without repeats.

        Raises:
            ValueError: a class has no backend.
        """
        unknown = [c for c in self.classes if self.backend_of(c) is None]
        if unknown:
            configured = sorted(c for spec in self.models for c in spec.classes)
            raise ValueError(f"no detector for class(es) {unknown}; built-in: {sorted(DEFAULT_BACKENDS)}"
                             + (f", configured in --models: {configured}" if configured else
                                "; others (e.g. person,car,truck) need a model in a --models config"))
        return list(dict.fromkeys(self.backend_of(c) for c in self.classes))

    def detector_config(self) -> DetectorConfig:
        """Settings for every detector of the run; create_detector picks each backend's models."""
        return DetectorConfig(min_probability=self.min_probability, threads=self.threads, device=self.device,
                              models=self.used_models(), precision=self.precision)


def prepare_models(config: BlurConfig) -> BlurConfig:
    """Start-up checks, so that no model problem surfaces mid-run.

    Fetches every used model file (or finds it in the cache), verifies and
    pins its sha256, and loads each model-file backend once; with
    device="cuda" every detector is loaded, so a missing GPU is reported now.

    Raises:
        ValueError (ModelFileError and friends), ImportError (a backend's extra
        is not installed), DeviceError: the message says what to fix.
    """
    pinned = dataclasses.replace(config, models=pin_model_files(config.used_models()))
    detector_config = pinned.detector_config()
    for name in pinned.backends():
        if name not in available_detectors():
            raise ValueError(f"unknown detector {name!r}; choose from {available_detectors()}")
        if needs_model_file(name) or config.device != "cpu":
            create_detector(name, detector_config)
    return pinned
