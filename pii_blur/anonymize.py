"""The per-image core: detect in the upright image, blur the stored pixels, encode.

No Beam here; the DoFns in transforms/ call these functions.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from pii_blur import imageio, jpeg
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


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A blurred output file. encoding: how it was made, for the report."""

    data: bytes
    encoding: str


def render_blurred(image: imageio.DecodedImage, detections: Sequence[Detection], source_bytes: bytes,
                   metadata: MetadataWriter) -> Rendered:
    """The blurred image, encoded in the input's format with the input's metadata.

    JPEGs are patched block by block (jpeg.py): only DCT blocks under the blur
    change and every metadata segment stays byte-identical. Where that is not
    possible, and for other formats, the whole image is re-encoded and
    exiftool restores the metadata. Either way the EXIF thumbnail is
    regenerated from the blurred pixels (EXIF thumbnails use the stored
    layout) and embedded previews are dropped.
    """
    blurred = blur_detections(image.pixels, detections)
    thumbnail = imageio.encode_thumbnail(imageio.to_rgb8(blurred))
    fallback_reason = ""
    if image.format == "jpeg":
        try:
            data, _stats = jpeg.patch_jpeg_blocks(source_bytes, blurred, jpeg.changed_pixel_mask(image.pixels, blurred),
                                                  thumbnail_jpeg=thumbnail)
            return Rendered(data, "jpeg-dct-blocks")
        except jpeg.LosslessUnavailable as error:
            fallback_reason = f" (block patch unavailable: {error})"
    encoded = imageio.encode(image, blurred)
    data = metadata.restore(source_bytes, encoded, FILE_EXTENSIONS[image.format], thumbnail)
    return Rendered(data, "full-reencode" + fallback_reason)
