"""The model config (`--models config.yaml|json`): which model finds each class.

The file maps a class (a label to blur) to a model::

    face:   {backend: onnx-yolo, path: "s3://bucket/face.onnx", sha256: "9f2c...", labels: {"0": face}}
    plate:  onnx-ppocr-plate                      # a built-in backend, by name
    person: {backend: onnx-yolo, path: yolov8n.onnx}    # labels from the model's own class names
    car:    {backend: onnx-yolo, path: yolov8n.onnx}
    truck:  {backend: onnx-yolo, path: yolov8n.onnx}

Keys of an entry:
  backend: a registered detector name (required).
  path: file, archive or folder; local (relative to the config file) or any
      fsspec URL. Required by backends that load a model file.
  sha256: expected content hash of the file (see model_files.py); optional.
  labels: model class (id, or name in the model) -> label. Optional for
      onnx-yolo (the model's `names` metadata) and imageai (COCO names);
      required for tensorflow. Only labels equal to a configured class are
      blurred by that model.
  input_size: onnx-yolo network input, an int or [height, width]
      (default: the model's fixed input shape, else its `imgsz` metadata, else 640).
  iou: onnx-yolo NMS IoU threshold (default 0.45).
  layout: onnx-yolo output layout, auto | v5 | v8 (default auto).
  model_type: imageai network, retinanet | yolov3 | tiny-yolov3
      (default: guessed from the file name).
  signature: tensorflow signature (default serving_default).

Entries that name the same model with the same settings are loaded once and
serve all their classes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import fsspec

from pii_blur.models import model_files

OPTIONAL_KEYS = ("path", "sha256", "labels", "input_size", "iou", "layout", "model_type", "signature")
LAYOUTS = ("auto", "v5", "v8")
IMAGEAI_MODEL_TYPES = ("retinanet", "yolov3", "tiny-yolov3")


class ModelConfigError(ValueError):
    """The model config is unreadable or invalid; the message says where."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model and the classes it finds (hashable, so it can key caches and dedupe).

    labels: pairs (model class id or name, label), sorted.
    classes: the labels this model is used for; its other detections are dropped.
    input_size: (height, width) or None.
    """

    backend: str
    path: str = ""
    sha256: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    classes: tuple[str, ...] = ()
    input_size: Optional[tuple[int, int]] = None
    iou: float = 0.45
    layout: str = "auto"
    model_type: str = ""
    signature: str = "serving_default"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def model_key(self) -> "ModelSpec":
        """The spec without its classes: equal for entries that share one loaded model."""
        return dataclasses.replace(self, classes=())

    def describe(self) -> str:
        return f"{self.backend} {self.path}" if self.path else self.backend

    def to_json(self) -> dict:
        record = dataclasses.asdict(self)
        record["labels"] = dict(self.labels)
        return record


def load_model_config(url: str) -> tuple[ModelSpec, ...]:
    """Read a model config (YAML, or JSON by .json suffix) from a path or fsspec URL.

    Returns one spec per distinct model, its `classes` the config's keys that
    chose it. Relative paths are taken from the config file's folder.

    Raises:
        ModelConfigError: unreadable file or invalid content.
    """
    try:
        with fsspec.open(url, "rt", encoding="utf-8") as source:
            text = source.read()
    except FileNotFoundError:
        raise ModelConfigError(f"model config {url} does not exist") from None
    except Exception as error:  # noqa: BLE001 - reported as one clear start-up error
        raise ModelConfigError(f"cannot read model config {url}: {type(error).__name__}: {error}") from error
    try:
        if url.lower().endswith(".json"):
            content = json.loads(text)
        else:
            import yaml
            content = yaml.safe_load(text)
    except ValueError as error:   # json.JSONDecodeError and yaml.YAMLError
        raise ModelConfigError(f"model config {url} is not valid JSON/YAML: {error}") from error
    except Exception as error:  # noqa: BLE001 - yaml.YAMLError does not derive from ValueError
        raise ModelConfigError(f"model config {url} is not valid YAML: {error}") from error
    return parse_model_config(content, base=_folder_of(url), source=url)


def parse_model_config(content: Any, base: str = "", source: str = "model config") -> tuple[ModelSpec, ...]:
    """Specs from a parsed config mapping (see the module docstring).

    base: folder or URL that relative paths are taken from.
    """
    if not isinstance(content, dict) or not content:
        raise ModelConfigError(f"{source}: expected a mapping of class -> model, got {type(content).__name__}")
    by_model: dict[ModelSpec, list[str]] = {}
    for label, entry in content.items():
        spec = _parse_entry(str(label), entry, base, f"{source}: {label}")
        by_model.setdefault(spec.model_key(), []).append(str(label))
    return tuple(dataclasses.replace(spec, classes=tuple(classes)) for spec, classes in by_model.items())


def _parse_entry(label: str, entry: Any, base: str, where: str) -> ModelSpec:
    if isinstance(entry, str):
        entry = {"backend": entry}
    if not isinstance(entry, dict):
        raise ModelConfigError(f"{where}: expected a backend name or a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - {"backend", *OPTIONAL_KEYS})
    if unknown:
        raise ModelConfigError(f"{where}: unknown key(s) {unknown}; allowed: {['backend', *OPTIONAL_KEYS]}")
    backend = entry.get("backend")
    if not isinstance(backend, str) or not backend:
        raise ModelConfigError(f"{where}: 'backend' is required, e.g. onnx-yolo, tensorflow, imageai")
    fields: dict[str, Any] = {"backend": backend}
    if entry.get("path"):
        fields["path"] = _resolve(str(entry["path"]), base)
    if entry.get("sha256"):
        fields["sha256"] = str(entry["sha256"]).lower().strip()
    labels = entry.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ModelConfigError(f"{where}: 'labels' must map model class ids or names to label strings")
    fields["labels"] = tuple(sorted((str(k), v) for k, v in labels.items()))
    if "input_size" in entry:
        fields["input_size"] = _input_size(entry["input_size"], where)
    if "iou" in entry:
        iou = entry["iou"]
        if not isinstance(iou, (int, float)) or not 0 < iou <= 1:
            raise ModelConfigError(f"{where}: 'iou' must be a number in (0, 1], got {iou!r}")
        fields["iou"] = float(iou)
    if "layout" in entry:
        if entry["layout"] not in LAYOUTS:
            raise ModelConfigError(f"{where}: 'layout' must be one of {list(LAYOUTS)}, got {entry['layout']!r}")
        fields["layout"] = entry["layout"]
    if "model_type" in entry:
        if entry["model_type"] not in IMAGEAI_MODEL_TYPES:
            raise ModelConfigError(f"{where}: 'model_type' must be one of {list(IMAGEAI_MODEL_TYPES)}, "
                                   f"got {entry['model_type']!r}")
        fields["model_type"] = entry["model_type"]
    if "signature" in entry:
        fields["signature"] = str(entry["signature"])
    return ModelSpec(**fields)


def _input_size(value: Any, where: str) -> tuple[int, int]:
    sizes = [value, value] if isinstance(value, int) else value
    if (not isinstance(sizes, (list, tuple)) or len(sizes) != 2
            or not all(isinstance(v, int) and v >= 32 and v % 32 == 0 for v in sizes)):
        raise ModelConfigError(f"{where}: 'input_size' must be an int or [height, width], multiples of 32, "
                               f"got {value!r}")
    return int(sizes[0]), int(sizes[1])


def _folder_of(url: str) -> str:
    if model_files.is_local(url):
        return os.path.dirname(os.path.abspath(model_files._local_path(url)))
    return url.rsplit("/", 1)[0]


def _resolve(path: str, base: str) -> str:
    """An absolute path or URL for `path` from the config."""
    if not model_files.is_local(path):
        return path
    path = os.path.expanduser(model_files._local_path(path))
    if os.path.isabs(path) or not base:
        return os.path.abspath(path)
    if model_files.is_local(base):
        return os.path.normpath(os.path.join(base, path))
    return f"{base}/{path}"


def pin_model_files(specs: tuple[ModelSpec, ...]) -> tuple[ModelSpec, ...]:
    """Fetch (or find in the cache) every spec's file now, verify it, and record its sha256.

    Done once at start-up, so that a missing or wrong file stops the run
    before any work, and every worker loads exactly the content checked here.

    Raises:
        model_files.ModelFileError: missing file or sha256 mismatch.
    """
    pinned = []
    for spec in specs:
        if spec.path:
            local = model_files.fetch_model(spec.path, spec.sha256)
            spec = dataclasses.replace(spec, sha256=local.sha256)
        pinned.append(spec)
    return tuple(pinned)
