"""The detector interface and its registry.

A detector takes a batch of upright RGB images and returns, per image, typed
detections in that image's pixels. Score thresholds come from the user's
MIN_PERCENTAGE_PROBABILITY through each detector's own `threshold_for`.
"""

from __future__ import annotations

import abc
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import threading
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

import cv2
import numpy as np

from pii_blur.types import Detection

if TYPE_CHECKING:
    from pii_blur.models.model_config import ModelSpec

DEVICES = ("cpu", "cuda")
PRECISIONS = ("int8", "fp32")
# The vendored models' precision where --precision does not choose one, by
# measurement (README, "int8 or fp32": int8 where blur recall stayed within 0.5
# points of fp32 on every dev set, size bin and panorama pitch band; CenterFace's
# int8 with its lower threshold, centerface.INT8_THRESHOLD_FACTOR).
DEFAULT_PRECISION = {"onnx-centerface": "int8", "onnx-ppocr-plate": "int8"}


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Settings shared by all detectors.

    min_probability: MIN_PERCENTAGE_PROBABILITY / 100, in (0, 1].
    threads: ONNX Runtime (and TF, torch) intra-op threads per model (0 lets it choose).
    device: "cpu" or "cuda" (see onnx_providers).
    models: the run's model files, one spec per model with the classes it is
        used for (from --models); create_detector picks those of its backend.
    model: the one model a backend instance loads (set by create_detector).
    precision: "int8" or "fp32" weights for the vendored models, or None for
        each one's DEFAULT_PRECISION (see precision_of).
    """

    min_probability: float = 0.4
    threads: int = 0
    device: str = "cpu"
    models: tuple["ModelSpec", ...] = ()
    model: Optional["ModelSpec"] = None
    precision: Optional[str] = None

    def precision_of(self, backend: str) -> str:
        """The precision that vendored-model backend `backend` runs at."""
        return precision_of(backend, self.precision)


def precision_of(backend: str, precision: Optional[str] = None) -> str:
    """`precision` if chosen, else the backend's measured default (fp32 for unlisted ones).

    Raises:
        ValueError: unknown precision (the message lists the valid ones).
    """
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {list(PRECISIONS)}")
    return precision or DEFAULT_PRECISION.get(backend, "fp32")


class DeviceError(RuntimeError):
    """The requested device (e.g. CUDA) is not available; the message lists what is."""


# Near misses: detections scoring at least this fraction of the blur
# threshold are reported (not blurred), so people can review them.
NEAR_MISS_FRACTION = 0.5


class Detector(abc.ABC):
    """Finds objects of some labels in images.

    threshold: score at or above which a detection is blurred.
    floor: lowest score returned by detect(); those below `threshold` are near misses.
    """

    labels: tuple[str, ...] = ()
    threshold: float = 0.5

    @property
    def floor(self) -> float:
        return NEAR_MISS_FRACTION * self.threshold

    @abc.abstractmethod
    def detect(self, images_rgb: Sequence[np.ndarray], rescale: bool = True) -> list[list[Detection]]:
        """Detect objects.

        images_rgb: HxWx3 uint8 RGB arrays, upright. Returns one list per image,
        boxes in that image's pixels, every detection scoring >= self.floor.
        rescale: the detector may enlarge small images (photos); False when the
        caller chose the resolution (panorama views). Fixed-input networks
        (letterboxing backends) resize either way.
        """


class DetectorGroup(Detector):
    """Several models of one backend (e.g. two YOLO files) seen as one detector.

    All members must share one threshold: the sphere and report code key
    thresholds by detector.
    """

    def __init__(self, members: Sequence[Detector]):
        thresholds = {member.threshold for member in members}
        if len(thresholds) != 1:
            raise ValueError(f"detectors grouped under one backend need one threshold, got {sorted(thresholds)}")
        self.members = list(members)
        self.threshold = thresholds.pop()
        self.labels = tuple(dict.fromkeys(label for member in members for label in member.labels))

    def detect(self, images_rgb: Sequence[np.ndarray], rescale: bool = True) -> list[list[Detection]]:
        found: list[list[Detection]] = [[] for _ in images_rgb]
        for member in self.members:
            for per_image, detections in zip(found, member.detect(images_rgb, rescale)):
                per_image.extend(detections)
        return found


_REGISTRY: dict[str, Callable[[DetectorConfig], Detector]] = {}
_NEEDS_MODEL_FILE: set[str] = set()
_DEVICE: contextvars.ContextVar[str] = contextvars.ContextVar("pii_blur_device", default="cpu")


def register(name: str, needs_model_file: bool = False):
    """Class decorator: make a detector constructible by name.

    needs_model_file: the backend loads a user's model (DetectorConfig.model,
    from --models) rather than vendored weights.
    """
    def wrap(factory):
        _REGISTRY[name] = factory
        if needs_model_file:
            _NEEDS_MODEL_FILE.add(name)
        return factory
    return wrap


def needs_model_file(name: str) -> bool:
    return name in _NEEDS_MODEL_FILE


def available_detectors() -> list[str]:
    return sorted(_REGISTRY)


def create_detector(name: str, config: DetectorConfig) -> Detector:
    """Build a registered detector.

    A backend that loads model files gets one instance per model of
    `config.models` with this backend (grouped when several); `config.model`
    set directly is used as is.

    Raises:
        ValueError: unknown name (the message lists the valid ones), or a
            model-file backend with no model.
        DeviceError: config.device is not available.
    """
    with _AHEAD_LOCK:
        ahead = _BUILT_AHEAD.pop((name, config), None)
    if ahead is not None:
        return ahead.result()   # raises what building it raised
    return _build(name, config)


# Detectors that build_ahead is building or has built, by (name, config), each
# for the first create_detector that asks.
_BUILT_AHEAD: dict[tuple[str, DetectorConfig], concurrent.futures.Future] = {}
_AHEAD_LOCK = threading.Lock()


def build_ahead(names: Sequence[str], config: DetectorConfig) -> None:
    """Start building the vendored-weights detectors among `names` on a background thread,
    for a pipeline that will ask this process for them: create_detector then hands each
    one out (waiting for it if need be) instead of building it again.

    ONNX Runtime releases the GIL while it loads a model, so the default models
    (0.17 s) load while Beam builds and starts the pipeline. Backends that need a
    model file are left to their workers (config.prepare_models has already
    checked them).
    """
    futures = {}
    with _AHEAD_LOCK:
        for name in names:
            if name in _REGISTRY and not needs_model_file(name) and (name, config) not in _BUILT_AHEAD:
                futures[name] = _BUILT_AHEAD[(name, config)] = concurrent.futures.Future()

    def build() -> None:
        for name, future in futures.items():
            try:
                future.set_result(_build(name, config))
            except Exception as error:  # noqa: BLE001 - handed to the create_detector that asks
                future.set_exception(error)

    if futures:
        threading.Thread(target=build, name="pii-blur-build-ahead", daemon=True).start()


def _build(name: str, config: DetectorConfig) -> Detector:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose from {available_detectors()}") from None
    if config.device not in DEVICES:
        raise ValueError(f"unknown device {config.device!r}; choose from {list(DEVICES)}")
    with _building_on(config.device):
        if name not in _NEEDS_MODEL_FILE or config.model is not None:
            return factory(config)
        specs = [spec for spec in config.models if spec.backend == name]
        if not specs:
            raise ValueError(f"detector {name!r} needs a model file: name one in the --models config")
        members = [factory(dataclasses.replace(config, model=spec, models=())) for spec in specs]
    return members[0] if len(members) == 1 else DetectorGroup(members)


@contextlib.contextmanager
def _building_on(device: str):
    token = _DEVICE.set(device)
    try:
        yield
    finally:
        _DEVICE.reset(token)


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime execution providers for `device`, best first.

    Raises:
        DeviceError: "cuda" without onnxruntime-gpu's CUDAExecutionProvider;
            the message lists the providers this onnxruntime has.
    """
    import onnxruntime

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "cuda":
        raise ValueError(f"unknown device {device!r}; choose from {list(DEVICES)}")
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DeviceError(f"--device cuda needs onnxruntime's CUDAExecutionProvider (pip install "
                          f"'pii-blur[gpu]', which installs onnxruntime-gpu instead of onnxruntime); "
                          f"this onnxruntime {onnxruntime.__version__} has {available}")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def onnx_session(model: bytes | str, threads: int, device: Optional[str] = None):
    """An ONNX Runtime session with a fixed thread count.

    device: "cpu" or "cuda"; None means the device of the DetectorConfig that
    create_detector is building (so every backend follows --device).

    Raises:
        DeviceError: CUDA asked for but not available, or the session could
            not use it (no GPU or driver: ONNX Runtime would silently fall back).
    """
    import onnxruntime

    device = device or _DEVICE.get()
    providers = onnx_providers(device)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model, options, providers=providers)
    if device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise DeviceError(f"--device cuda: ONNX Runtime could not start its CUDA provider (no GPU or CUDA/cuDNN "
                          f"libraries?); the session got {session.get_providers()}")
    return session


# At most this many input pixels per session.run when same-size images are
# batched, per device. On CPU one image per run: batching a panorama's views
# brought no speed (5.65 against 5.38 s for both models on one 5760x2880
# panorama, warm) and held 0.9 GB more of activations in ONNX Runtime's
# arena (2.3 against 1.4 GB peak). On a GPU, four 1440x1440 views.
BATCH_PIXELS = {"cpu": 1, "cuda": 4 * 1440 * 1440}


def same_size_batches(sizes: Sequence[tuple[int, int]], max_pixels: int) -> list[list[int]]:
    """Indices of `sizes` (network input (height, width) per image) grouped into
    batches of one size each, at most max_pixels per batch (at least one image),
    in first-seen order."""
    groups: dict[tuple[int, int], list[list[int]]] = {}
    for index, size in enumerate(sizes):
        batches = groups.setdefault(tuple(size), [[]])
        if batches[-1] and (len(batches[-1]) + 1) * size[0] * size[1] > max_pixels:
            batches.append([])
        batches[-1].append(index)
    return [batch for batches in groups.values() for batch in batches]


def run_in_batches(session, images_rgb: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]],
                   preprocess: Callable[[np.ndarray], np.ndarray], max_pixels: int) -> Iterator[tuple[int, list]]:
    """(index, that image's row of every output) of an ONNX session over `images_rgb`.

    sizes: each image's network input (height, width); preprocess: an image's
    1xCxHxW blob. Same-size images share a session.run (same_size_batches).
    """
    input_name = session.get_inputs()[0].name
    for batch in same_size_batches(sizes, max_pixels):
        blobs = [preprocess(images_rgb[index]) for index in batch]
        outputs = session.run(None, {input_name: blobs[0] if len(blobs) == 1 else np.concatenate(blobs)})
        for row, index in enumerate(batch):
            yield index, [output[row] for output in outputs]


# Metadata of a model that takes its input's 8-bit codes (tools/derive_int8.py, code_input):
# the code of each pixel value 0..255, 256 bytes in hex; absent where they are the pixel values.
PIXEL_CODES = "pixel_codes"
_PIXEL_VALUES = np.arange(256, dtype=np.uint8)


def input_codes(session) -> Optional[np.ndarray]:
    """The code of each pixel value, uint8 (256,), for a session whose input is 8-bit codes
    (uint8 NHWC); None for one that takes float planes."""
    if session.get_inputs()[0].type != "tensor(uint8)":
        return None
    recorded = session.get_modelmeta().custom_metadata_map.get(PIXEL_CODES)
    return np.frombuffer(bytes.fromhex(recorded), np.uint8) if recorded else _PIXEL_VALUES


def to_codes(image: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """1xHxWxC uint8: the codes (input_codes) of an HxWxC uint8 image's pixels."""
    if np.array_equal(codes, _PIXEL_VALUES):
        return np.ascontiguousarray(image)[None]
    return cv2.LUT(image, codes)[None]


# The vendored networks take inputs whose sides are multiples of this (their deepest stride).
INPUT_MULTIPLE = 32


def round_up(value: float, multiple: int) -> int:
    return max(multiple, int(np.ceil(value / multiple)) * multiple)
