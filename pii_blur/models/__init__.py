"""Detectors behind one small interface, registered by name."""

from pii_blur.models.base import DetectorConfig, Detector, create_detector, available_detectors
from pii_blur.models import centerface, ppocr_plate  # noqa: F401  (registers the built-ins)

__all__ = ["Detector", "DetectorConfig", "create_detector", "available_detectors"]
