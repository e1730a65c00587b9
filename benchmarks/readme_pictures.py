"""Before/after crops for the README, made by the tool itself.

    python benchmarks/readme_pictures.py OUT_DIR IMAGE [IMAGE ...] [--per-image 2]

For each image, runs detection and blurring in-process (as a worker does)
and writes OUT_DIR/NAME-K.jpg: the region around the K-th largest blurred
object, before (left) and after (right), with its label, score and, on
panoramas, yaw/pitch. Use only images whose licence allows publishing them.
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

from pii_blur import anonymize, imageio
from pii_blur.metadata import MetadataWriter
from pii_blur.models import DetectorConfig, create_detector

CROP_SIDE = 360


def crop(pixels: np.ndarray, box, pad: float = 1.2) -> np.ndarray:
    height, width = pixels.shape[:2]
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1 + 2 * pad)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    right, bottom = int(min(cx + side / 2, width)), int(min(cy + side / 2, height))
    return cv2.resize(pixels[top:bottom, left:right], (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--per-image", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    config = DetectorConfig(min_probability=0.4, threads=2)
    detectors = [create_detector(name, config) for name in ("onnx-centerface", "onnx-ppocr-plate")]
    with MetadataWriter() as metadata:
        for path in args.images:
            data = open(path, "rb").read()
            image = imageio.decode(data)
            found = anonymize.detect(image, detectors, {"face", "plate"},
                                     anonymize.projection_of(image, data, "auto"))
            after = imageio.decode(anonymize.render_blurred(image, found, data, metadata).data).rgb8()
            before = image.rgb8()
            ranked = sorted(found.to_blur, key=lambda d: -(d.width * d.height))[:args.per_image]
            stem = os.path.splitext(os.path.basename(path))[0]
            for index, detection in enumerate(ranked):
                pair = np.concatenate([crop(before, detection.box), np.full((CROP_SIDE, 8, 3), 255, np.uint8),
                                       crop(after, detection.box)], axis=1)
                caption = f"{detection.label} {detection.score:.2f}"
                if detection.yaw_deg is not None:
                    caption += f"  yaw {detection.yaw_deg:.0f}  pitch {detection.pitch_deg:.0f}"
                cv2.putText(pair, caption, (10, CROP_SIDE - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
                target = os.path.join(args.out_dir, f"{stem}-{index + 1}.jpg")
                cv2.imwrite(target, pair[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
                print(target, caption)


if __name__ == "__main__":
    main()
