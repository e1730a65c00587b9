"""Beam PTransforms and DoFns: thin wiring around the pure core modules."""

from pii_blur.transforms.anonymize import AnonymizeImages
from pii_blur.transforms.match import MatchImages
from pii_blur.transforms.report import WriteReport

__all__ = ["AnonymizeImages", "MatchImages", "WriteReport"]
