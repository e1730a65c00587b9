"""Build synthetic labelled equirectangular panoramas from labelled perspective photos.

Usage:
    python benchmarks/make_panoramas.py SRC_DATA_DIR OUT_DIR [--count 12] [--width 4096] [--seed 0]
        [--plates 3] [--format png]

SRC_DATA_DIR is the evaluation data folder (with faces/labels.json and
plates/labels.json; see its README: boxes [x1, y1, x2, y2, label], top-left
inclusive, bottom-right exclusive). Each panorama gets photos projected onto
the sphere through perspective cameras at chosen yaw/pitch, yaw spread over
0-360°, on a smooth random colour background:
- face photos, one per pitch band |pitch| < 20°, 35-50° and 60-75° (up and
  down by chance), the first one across the 0/360° seam;
- plate photos, cropped around their plate (at the same scale as the whole
  photo 60° wide), cycling through |pitch| < 25°, 32-52° and 58-85° (up and
  down), so that every band has plates, the poles included: a camera on a car
  roof or a pole sees plates far below the horizon.

Outputs in OUT_DIR, besides the panoramas:
- objects.json: {"width", "height", "panoramas": {file name: [object, ...]}},
  each object {"label", "box" (one equirect box) or "boxes" (two, across the
  seam; [x1, y1, x2, y2], exclusive ends, one ending at x2 == width, one
  starting at 0), "yaw_deg" in [-180, 180), "pitch_deg", "seam": bool,
  "height_px": the object's height at the panorama's own resolution (its
  angular size), "view": the camera the photo was projected through
  (pii_blur.sphere.View fields), "box_in_view": the box in photo pixels,
  "eval_boxes": the indices of its boxes in labels.json}, so the exact
  footprint on the sphere can be rebuilt from view + box_in_view;
- labels.json, box_tags.json, box_footprints.json: the same objects in the
  form /work/shared/tools/blur_eval.py reads (one entry per equirect box, so
  two for an object across the seam), tagged with their pitch band
  (pitch<30, pitch30-55, pitch>55), seam, and size bin (size<16, size16-32,
  size32-64, size64+ by height_px), each with its exact outline on the
  panorama (null for an outline around a pole).
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
from typing import Optional

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pii_blur import sphere  # noqa: E402

# Angular width (degrees) a photo spans on the sphere, by source folder prefix (plates: the whole
# photo, before it is cropped around its plate).
PHOTO_FOV_DEG = {"faces": 40.0, "plates": 60.0}
# (lowest |pitch|, highest |pitch|) of each placement band, one photo each, both hemispheres by chance.
PITCH_BANDS = [(0.0, 20.0), (0.0, 20.0), (35.0, 50.0), (35.0, 50.0), (60.0, 75.0), (60.0, 75.0)]
PLATE_PITCH_BANDS = [(0.0, 25.0), (32.0, 52.0), (58.0, 85.0)]
# A plate photo is cropped to this many plate widths across (3:2), so that several fit on one panorama.
PLATE_CROP_WIDTHS = 4.0
# Tags for blur_eval.py: (name, lowest, highest) |pitch| and height in pixels.
PITCH_TAGS = (("pitch<30", 0.0, 30.0), ("pitch30-55", 30.0, 55.0), ("pitch>55", 55.0, 90.1))
SIZE_TAGS = (("size<16", 0.0, 16.0), ("size16-32", 16.0, 32.0), ("size32-64", 32.0, 64.0),
             ("size64+", 64.0, math.inf))


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


@dataclasses.dataclass
class Photo:
    """A labelled photo (RGB) and the horizontal angle it spans on the sphere."""

    rgb: np.ndarray
    boxes: list
    fov_deg: float
    source: str


def read_photo(path: str, boxes: list, kind: str) -> Photo:
    rgb = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    fov = PHOTO_FOV_DEG[kind]
    if kind == "plates":
        rgb, boxes, fov = crop_around_first_box(rgb, boxes, fov)
    return Photo(rgb, boxes, fov, os.path.basename(path))


def crop_around_first_box(rgb: np.ndarray, boxes: list, fov_deg: float) -> tuple[np.ndarray, list, float]:
    """A 3:2 crop PLATE_CROP_WIDTHS plate widths wide around the first box, the boxes inside it moved
    into it, and the crop's fov at the whole photo's angular scale."""
    height, width = rgb.shape[:2]
    x1, y1, x2, y2, _ = boxes[0]
    crop_w = min(width, int(PLATE_CROP_WIDTHS * (x2 - x1)))
    crop_h = min(height, int(crop_w * 2 / 3))
    cx0 = int(np.clip((x1 + x2) / 2 - crop_w / 2, 0, width - crop_w))
    cy0 = int(np.clip((y1 + y2) / 2 - crop_h / 2, 0, height - crop_h))
    kept = [[bx1 - cx0, by1 - cy0, bx2 - cx0, by2 - cy0, label] for bx1, by1, bx2, by2, label in boxes
            if bx1 >= cx0 and by1 >= cy0 and bx2 <= cx0 + crop_w and by2 <= cy0 + crop_h]
    focal = width / 2 / math.tan(math.radians(fov_deg) / 2)
    crop_fov = math.degrees(2 * math.atan(crop_w / 2 / focal))
    return np.ascontiguousarray(rgb[cy0:cy0 + crop_h, cx0:cx0 + crop_w]), kept, crop_fov


def outline(view: sphere.View, box_in_view, pano_width: int, pano_height: int) -> Optional[np.ndarray]:
    """The object's exact outline on the panorama, k x 2 continuous (x, y), x unwrapped along it
    (may leave [0, W)); None when it holds a pole (no simple polygon)."""
    x1, y1, x2, y2 = box_in_view
    for u, v in sphere._pole_pixels(view):
        if x1 <= u <= x2 and y1 <= v <= y2:
            return None
    t = np.linspace(0.0, 1.0, 16, endpoint=False)
    u = np.concatenate([x1 + (x2 - x1) * t, np.full(16, x2), x2 - (x2 - x1) * t, np.full(16, x1)])
    v = np.concatenate([np.full(16, y1), y1 + (y2 - y1) * t, np.full(16, y2), y2 - (y2 - y1) * t])
    x, y = sphere.direction_to_equirect_pixel(sphere.view_pixel_to_direction(view, u, v), pano_width, pano_height)
    steps = np.mod(np.diff(x) + pano_width / 2, pano_width) - pano_width / 2
    x = x[0] + np.concatenate([[0.0], np.cumsum(steps)])
    return np.stack([x, y], axis=1)


def tag_of(tags, value: float) -> str:
    return next(name for name, low, high in tags if low <= value < high)


def place(pano: np.ndarray, photo: Photo, yaw_deg: float, pitch_deg: float) -> tuple[np.ndarray, list[dict]]:
    """Project one photo onto the panorama; return the panorama and its objects' ground truth."""
    height, width = pano.shape[:2]
    view = sphere.View(yaw_deg, pitch_deg, photo.fov_deg, photo.rgb.shape[1], photo.rgb.shape[0])
    pano = sphere.paste_view(pano, photo.rgb, view)
    per_px = (width / (2 * math.pi)) / view.focal_px   # panorama pixels per photo pixel at the centre
    objects = []
    for x1, y1, x2, y2, label in photo.boxes:
        footprint = sphere.Footprint(view, (float(x1), float(y1), float(x2), float(y2)), 1.0)
        found = sphere.sphere_detection(label, [footprint], width, height)
        entry = {"label": label, "yaw_deg": round(found.yaw_deg, 3), "pitch_deg": round(found.pitch_deg, 3),
                 "seam": len(found.boxes) == 2, "height_px": round((y2 - y1) * per_px, 2),
                 "view": dataclasses.asdict(view), "box_in_view": [x1, y1, x2, y2], "source": photo.source}
        if len(found.boxes) == 2:
            entry["boxes"] = [list(b) for b in found.boxes]
        else:
            entry["box"] = list(found.boxes[0])
        objects.append(entry)
    return pano, objects


def eval_form(objects: list[dict], width: int, height: int) -> tuple[list, list, list]:
    """blur_eval.py's labels, box tags and footprints of one panorama's objects (one entry per
    equirect box); sets each object's "eval_boxes"."""
    labels, tags, footprints = [], [], []
    for obj in objects:
        boxes = obj.get("boxes") or [obj["box"]]
        polygon = outline(sphere.View(**obj["view"]), obj["box_in_view"], width, height)
        obj["eval_boxes"] = list(range(len(labels), len(labels) + len(boxes)))
        for x1, y1, x2, y2 in boxes:
            labels.append([x1, y1, x2, y2, obj["label"]])
            tags.append([tag_of(PITCH_TAGS, abs(obj["pitch_deg"])), tag_of(SIZE_TAGS, obj["height_px"])]
                        + (["seam"] if obj["seam"] else []))
            if polygon is None:
                footprints.append(None)
            else:   # the outline's turn of the panorama that lies on this box
                shift = width * round(((x1 + x2) / 2 - polygon[:, 0].mean()) / width)
                footprints.append([[round(float(x) + shift, 2), round(float(y), 2)] for x, y in polygon])
    return labels, tags, footprints


def angular_radius(fov_deg: float, aspect: float) -> float:
    """Half-diagonal angle of a photo of horizontal fov and height/width aspect."""
    t = math.tan(math.radians(fov_deg) / 2)
    return math.degrees(math.atan(t * math.hypot(1, aspect)))


def plan_placements(rng: random.Random, photos: list[tuple[Photo, tuple[float, float]]]) -> list:
    """(yaw, pitch) per (photo, (lowest, highest) |pitch|), not overlapping; the first crosses the seam.

    Photos that find no room are skipped (None)."""
    placed: list[tuple[np.ndarray, float]] = []
    result = []
    for index, (photo, (low, high)) in enumerate(photos):
        radius = angular_radius(photo.fov_deg, photo.rgb.shape[0] / photo.rgb.shape[1])
        for _ in range(500):
            if index == 0:
                yaw = 180.0 + rng.uniform(-0.3, 0.3) * photo.fov_deg
                pitch = rng.uniform(-50, 50)
            else:
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


def write_json(path: str, value) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=1)
    os.replace(path + ".tmp", path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src_data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--count", type=int, default=12, help="panoramas to make (default 12)")
    parser.add_argument("--width", type=int, default=4096, help="panorama width in pixels, height is half (default 4096)")
    parser.add_argument("--photos", type=int, default=6, help="face photos per panorama (default 6)")
    parser.add_argument("--plates", type=int, default=3,
                        help="plate photos per panorama, cycling through the pitch bands (default 3; 0 for none)")
    parser.add_argument("--format", choices=("png", "jpg"), default="png",
                        help="png (lossless) or jpg (quality 92, like camera files) (default png)")
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
    objects_by_name, labels, tags, footprints = {}, {}, {}, {}
    face_i = plate_i = 0
    for pano_index in range(args.count):
        photos = []
        for slot in range(args.photos + (args.plates if plates else 0)):
            # Plates early (after the seam photo), so that they find room.
            if 1 <= slot <= args.plates and plates:
                path, boxes = plates[plate_i % len(plates)]
                band = PLATE_PITCH_BANDS[plate_i % len(PLATE_PITCH_BANDS)]
                plate_i += 1
                photos.append((read_photo(path, boxes, "plates"), band))
            else:
                path, boxes = faces[face_i % len(faces)]
                face_i += 1
                photos.append((read_photo(path, boxes, "faces"), PITCH_BANDS[(face_i + pano_index) % len(PITCH_BANDS)]))
        pano = background(width, height, np.random.default_rng(args.seed * 1000 + pano_index))
        objects = []
        for (photo, _), placement in zip(photos, plan_placements(rng, photos)):
            if placement is None:
                continue
            pano, found = place(pano, photo, *placement)
            objects.extend(found)
        name = f"pano_{pano_index:03d}.{args.format}"
        options = [cv2.IMWRITE_PNG_COMPRESSION, 1] if args.format == "png" else [cv2.IMWRITE_JPEG_QUALITY, 92]
        cv2.imwrite(os.path.join(args.out_dir, name), cv2.cvtColor(pano, cv2.COLOR_RGB2BGR), options)
        labels[name], tags[name], footprints[name] = eval_form(objects, width, height)
        objects_by_name[name] = objects
        logging.info("%s: %d objects (%d plates, %d across the seam)", name, len(objects),
                     sum(o["label"] == "plate" for o in objects), sum(o["seam"] for o in objects))
    write_json(os.path.join(args.out_dir, "objects.json"),
               {"width": width, "height": height, "panoramas": objects_by_name})
    write_json(os.path.join(args.out_dir, "box_tags.json"), tags)
    write_json(os.path.join(args.out_dir, "box_footprints.json"), footprints)
    write_json(os.path.join(args.out_dir, "labels.json"), labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
