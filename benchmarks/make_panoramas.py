"""Build synthetic labelled equirectangular panoramas from labelled perspective photos.

Usage:
    python benchmarks/make_panoramas.py SRC_DATA_DIR OUT_DIR [--count 12] [--width 4096] [--seed 0]
        [--plates 1]

SRC_DATA_DIR is the evaluation data folder (with faces/labels.json and
plates/labels.json; see its README: boxes [x1, y1, x2, y2, label], top-left
inclusive, bottom-right exclusive). Each panorama gets photos projected onto
the sphere through perspective cameras at chosen yaw/pitch: pitch bands
|pitch| < 30°, 30-55° and 55-75° (up and down), one photo across the 0/360°
seam, yaw spread over 0-360°. The background is smooth random colour.

OUT_DIR/labels.json maps each panorama's file name to a list of objects:
    {"label", "box" (one equirect box) or "boxes" (two, across the seam;
     [x1, y1, x2, y2], exclusive ends, one ending at x2 == width, one
     starting at 0), "yaw_deg" in [-180, 180), "pitch_deg",
     "seam": bool, "view": the camera the photo was projected through
     (pii_blur.sphere.View fields), "box_in_view": the box in photo pixels}
so the exact footprint on the sphere can be rebuilt from view + box_in_view.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import random
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pii_blur import sphere  # noqa: E402

# Angular width (degrees) a photo spans on the sphere, by source folder prefix.
PHOTO_FOV_DEG = {"faces": 40.0, "plates": 60.0}
# (lowest |pitch|, highest |pitch|) of each placement band, one photo each, both hemispheres by chance.
PITCH_BANDS = [(0.0, 20.0), (0.0, 20.0), (35.0, 50.0), (35.0, 50.0), (60.0, 75.0), (60.0, 75.0)]


def load_labels(data_dir: str, kind: str) -> list[tuple[str, list]]:
    with open(os.path.join(data_dir, kind, "labels.json")) as f:
        labels = json.load(f)
    return [(os.path.join(data_dir, kind, path), boxes) for path, boxes in sorted(labels.items()) if boxes]


def background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colour, periodic across the seam, with mild texture."""
    coarse = rng.integers(60, 200, (9, 16, 3)).astype(np.float32)
    coarse = np.concatenate([coarse, coarse[:, :1]], axis=1)  # wrap
    smooth = cv2.resize(coarse, (width + width // 16, height), interpolation=cv2.INTER_CUBIC)[:, :width]
    noise = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def place(pano: np.ndarray, photo_path: str, boxes: list, fov_deg: float, yaw_deg: float,
          pitch_deg: float) -> tuple[np.ndarray, list[dict]]:
    """Project one photo onto the panorama; return the panorama and its objects' ground truth."""
    height, width = pano.shape[:2]
    photo = cv2.cvtColor(cv2.imread(photo_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    view = sphere.View(yaw_deg, pitch_deg, fov_deg, photo.shape[1], photo.shape[0])
    pano = sphere.paste_view(pano, photo, view)
    objects = []
    for x1, y1, x2, y2, label in boxes:
        footprint = sphere.Footprint(view, (float(x1), float(y1), float(x2), float(y2)), 1.0)
        found = sphere.sphere_detection(label, [footprint], width, height)
        entry = {"label": label, "yaw_deg": round(found.yaw_deg, 3), "pitch_deg": round(found.pitch_deg, 3),
                 "seam": len(found.boxes) == 2, "view": dataclasses.asdict(view),
                 "box_in_view": [x1, y1, x2, y2], "source": os.path.basename(photo_path)}
        if len(found.boxes) == 2:
            entry["boxes"] = [list(b) for b in found.boxes]
        else:
            entry["box"] = list(found.boxes[0])
        objects.append(entry)
    return pano, objects


def angular_radius(fov_deg: float, aspect: float) -> float:
    """Half-diagonal angle of a photo of horizontal fov and height/width aspect."""
    t = math.tan(math.radians(fov_deg) / 2)
    return math.degrees(math.atan(t * math.hypot(1, aspect)))


def plan_placements(rng: random.Random, photos: list[tuple[str, list, float]], band_offset: int = 0) -> list:
    """(yaw, pitch) per photo: the first crosses the seam, the rest one per pitch band, not overlapping."""
    placed: list[tuple[np.ndarray, float]] = []
    result = []
    for index, (path, _, fov) in enumerate(photos):
        photo_h, photo_w = cv2.imread(path, cv2.IMREAD_REDUCED_GRAYSCALE_8).shape[:2]
        radius = angular_radius(fov, photo_h / photo_w)
        for _ in range(500):
            if index == 0:
                yaw = 180.0 + rng.uniform(-0.3, 0.3) * fov
                pitch = rng.uniform(-50, 50)
            else:
                low, high = PITCH_BANDS[(index - 1 + band_offset) % len(PITCH_BANDS)]
                pitch = rng.choice([-1, 1]) * rng.uniform(low, high)
                yaw = rng.uniform(0, 360)
            centre = sphere.yaw_pitch_to_direction(np.radians(yaw), np.radians(pitch))
            if all(sphere.angular_distance_deg(centre, other) > radius + other_radius + 2
                   for other, other_radius in placed):
                break
        else:
            result.append(None)  # no room left: skip this photo
            continue
        placed.append((centre, radius))
        result.append((float((yaw + 180) % 360 - 180), float(pitch)))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src_data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--count", type=int, default=12, help="panoramas to make (default 12)")
    parser.add_argument("--width", type=int, default=4096, help="panorama width in pixels, height is half (default 4096)")
    parser.add_argument("--photos", type=int, default=7, help="photos per panorama (default 7)")
    parser.add_argument("--plates", type=int, default=1,
                        help="of those, how many are plate photos (default 1; 0 for faces only)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rng = random.Random(args.seed)
    faces = load_labels(args.src_data_dir, "faces")
    plates = load_labels(args.src_data_dir, "plates") if args.plates else []
    rng.shuffle(faces)
    rng.shuffle(plates)
    os.makedirs(args.out_dir, exist_ok=True)
    width, height = args.width, args.width // 2
    labels = {}
    face_i = plate_i = 0
    for pano_index in range(args.count):
        photos = []
        for slot in range(args.photos):
            if 1 <= slot <= args.plates and plates:  # early, so the big plate photos find room
                path, boxes = plates[plate_i % len(plates)]
                plate_i += 1
                photos.append((path, boxes, PHOTO_FOV_DEG["plates"]))
            else:
                path, boxes = faces[face_i % len(faces)]
                face_i += 1
                photos.append((path, boxes, PHOTO_FOV_DEG["faces"]))
        pano = background(width, height, np.random.default_rng(args.seed * 1000 + pano_index))
        objects = []
        for (path, boxes, fov), placement in zip(photos, plan_placements(rng, photos, pano_index)):
            if placement is None:
                continue
            pano, found = place(pano, path, boxes, fov, *placement)
            objects.extend(found)
        name = f"pano_{pano_index:03d}.png"
        cv2.imwrite(os.path.join(args.out_dir, name), cv2.cvtColor(pano, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 1])
        labels[name] = objects
        logging.info("%s: %d objects (%d across the seam)", name, len(objects), sum(o["seam"] for o in objects))
    tmp = os.path.join(args.out_dir, "labels.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"width": width, "height": height, "panoramas": labels}, f, indent=1)
    os.replace(tmp, os.path.join(args.out_dir, "labels.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
