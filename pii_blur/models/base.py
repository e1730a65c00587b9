"""The detector interface and its registry.

A detector takes a batch of upright RGB images and returns, per image, typed
detections in that image's pixels. Score thresholds come from the user's
MIN_PERCENTAGE_PROBABILITY through each detector's own `threshold_for`.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Callable, Sequence

import numpy as np

from pii_blur.types import Detection


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Settings shared by all detectors.

    min_probability: MIN_PERCENTAGE_PROBABILITY / 100, in (0, 1].
    threads: ONNX Runtime intra-op threads per model (0 lets it choose).
    """

    min_probability: float = 0.4
    threads: int = 0


# Near misses: detections scoring at least this fraction of the blur
# threshold are reported (not blurred), so people can review them.
NEAR_MISS_FRACTION = 0.5


class Detector(abc.ABC):
    """Finds objects of some labels in images.

    threshold: score at or above which a detection is blurred.
    floor: lowest score returned by detect(); those below `threshold` are near misses.
    """

    labels: tuple[str, ...] = ()
    threshold: float = 0.5

    @property
    def floor(self) -> float:
        return NEAR_MISS_FRACTION * self.threshold

    @abc.abstractmethod
    def detect(self, images_rgb: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detect objects.

        images_rgb: HxWx3 uint8 RGB arrays, upright. Returns one list per image,
        boxes in that image's pixels, every detection scoring >= self.floor.
        """


_REGISTRY: dict[str, Callable[[DetectorConfig], Detector]] = {}


def register(name: str):
    """Class decorator: make a detector constructible by name."""
    def wrap(factory):
        _REGISTRY[name] = factory
        return factory
    return wrap


def available_detectors() -> list[str]:
    return sorted(_REGISTRY)


def create_detector(name: str, config: DetectorConfig) -> Detector:
    """Build a registered detector.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose from {available_detectors()}") from None
    return factory(config)


def onnx_session(model: bytes | str, threads: int):
    """An ONNX Runtime CPU session with a fixed thread count."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def round_up(value: float, multiple: int) -> int:
    return max(multiple, int(np.ceil(value / multiple)) * multiple)
