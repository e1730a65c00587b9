"""The typed elements that pass between the graph's steps, and their coder.

Every step after the one Reshuffle of paths is fused with the next, so
these elements stay in the worker's memory and are never encoded in full.
But Beam samples element sizes for its counters through each PCollection's
coder, and a default coder would pickle a sampled 5.7K panorama (100 MB) to
measure it. StagedCoder answers from the arrays' sizes instead.

A step's output is `Staged`: the next element, or the FileReport that ended
that input (failed, skipped, resumed); transforms.anonymize separates the two.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
from apache_beam import coders

from pii_blur import anonymize, imageio
from pii_blur.types import InputFile


@dataclasses.dataclass
class DecodedInput:
    """An input read and decoded.

    data: the exact bytes decoded; these, and only these, are copied or
    blurred. projection: anonymize.projection_of's answer. timings: seconds
    per stage so far, for the report.
    """

    input: InputFile
    data: bytes
    image: imageio.DecodedImage
    projection: str
    timings: dict

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.image.pixels.nbytes


@dataclasses.dataclass
class ViewedInput:
    """A decoded input and the views its detectors search (anonymize.project).

    found_by: per detector run so far, (its threshold, its detections per view).
    """

    decoded: DecodedInput
    views: anonymize.Views
    found_by: list = dataclasses.field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return self.decoded.nbytes + self.views.nbytes


@dataclasses.dataclass
class DetectedInput:
    """A decoded input and what was found in it (anonymize.merge)."""

    decoded: DecodedInput
    found: anonymize.Found

    @property
    def nbytes(self) -> int:
        return self.decoded.nbytes


@dataclasses.dataclass
class BlurredInput:
    """A detected input and its blurred pixels (image.pixels' layout and dtype)."""

    detected: DetectedInput
    pixels: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.detected.nbytes + self.pixels.nbytes


class Staged:
    """Type hint of a step's output: one of the elements above, or a FileReport."""


class StagedCoder(coders.Coder):
    """Pickles elements when a runner must move them; sizes them without pickling."""

    def encode(self, value) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes):
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value) -> int:
        return int(getattr(value, "nbytes", 0)) or 1024

    def to_type_hint(self):
        return Staged


for element_type in (Staged, DecodedInput, ViewedInput, DetectedInput, BlurredInput):
    coders.registry.register_coder(element_type, StagedCoder)

