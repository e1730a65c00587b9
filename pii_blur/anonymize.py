"""The per-image core: detect in the upright image, blur the stored pixels, encode.

No Beam here; the DoFns in transforms/ call these functions.
"""

from __future__ import annotations

from typing import Sequence

from pii_blur import imageio
from pii_blur.blur import blur_detections
from pii_blur.geometry import box_upright_to_stored, to_upright
from pii_blur.metadata import MetadataWriter
from pii_blur.models.base import Detector
from pii_blur.types import Detection

FILE_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif", "webp": ".webp"}


def detect(image: imageio.DecodedImage, detectors: Sequence[Detector],
           labels: set[str]) -> tuple[list[Detection], list[Detection]]:
    """(to blur, near misses) of `labels` in `image`, boxes in stored pixels.

    Near misses scored between a detector's floor and its threshold: they
    are reported for review, not blurred. Detectors see the image upright
    (EXIF orientation applied), because models are trained on upright faces
    and plates.
    """
    upright = to_upright(image.rgb8(), image.orientation)
    upright_h, upright_w = upright.shape[:2]
    to_blur, near_misses = [], []
    for detector in detectors:
        for detection in detector.detect([upright])[0]:
            if detection.label not in labels:
                continue
            box = box_upright_to_stored(detection.box, image.orientation, upright_w, upright_h)
            found = Detection(detection.label, detection.score, box)
            (to_blur if detection.score >= detector.threshold else near_misses).append(found)
    return to_blur, near_misses


def render_blurred(image: imageio.DecodedImage, detections: Sequence[Detection], source_bytes: bytes,
                   metadata: MetadataWriter) -> bytes:
    """The blurred image, encoded in the input's format with the input's metadata."""
    blurred = blur_detections(image.pixels, detections)
    encoded = imageio.encode(image, blurred)
    # EXIF thumbnails are stored in the same pixel layout as the main image.
    thumbnail = imageio.encode_thumbnail(imageio.to_rgb8(blurred))
    return metadata.restore(source_bytes, encoded, FILE_EXTENSIONS[image.format], thumbnail)
