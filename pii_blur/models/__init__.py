"""Detectors behind one small interface, registered by name.

Built-in (vendored weights): onnx-centerface, onnx-ppocr-plate. Model-file
backends (the user's model, from --models): onnx-yolo, tensorflow (needs
pii-blur[tensorflow]) and imageai (needs pii-blur[imageai]); their heavy
libraries are imported only when such a model is loaded.
"""

from pii_blur.models.base import (DetectorConfig, Detector, DeviceError, available_detectors, create_detector,
                                  needs_model_file, onnx_providers)
from pii_blur.models import centerface, ppocr_plate  # noqa: F401  (registers the built-ins)
from pii_blur.models import imageai_backend, tensorflow_od, yolo  # noqa: F401  (registers the model-file backends)

__all__ = ["Detector", "DetectorConfig", "DeviceError", "create_detector", "available_detectors",
           "needs_model_file", "onnx_providers"]
