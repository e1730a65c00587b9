"""Model-file backends with the core install: YOLO ONNX decoding, model config,
model files over HTTP with the cache and sha256, seed mode through the
pipeline, the RunInference model handler, and --device checks.

The YOLO models are ONNX graphs built here whose output is a constant we
choose, so decoding, letterboxing, NMS and label mapping are checked exactly.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import threading

import apache_beam as beam
import numpy as np
import onnx
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import ASTRONAUT_FACE_BOX, high_frequency_energy, render_car_with_plate
from pii_blur import anonymize, cli, pipeline
from pii_blur.blur import WHOLE_OBJECT_STYLE, blur_detections, style_for
from pii_blur.config import BlurConfig
from pii_blur.models import DetectorConfig, DeviceError, create_detector, onnx_providers
from pii_blur.models.base import Detector, DetectorGroup, register
from pii_blur.models.model_config import ModelConfigError, ModelSpec, parse_model_config
from pii_blur.models.model_files import ModelFileError, fetch_model, tree_sha256
from pii_blur.models.yolo import YoloModelError, detect_layout
from pii_blur.transforms.detect import DetectPII, ViewsModelHandler
from pii_blur.transforms.elements import DecodedInput, ViewedInput
from pii_blur.types import Detection, FileReport, InputFile, Status

LOCAL = ["--runner=FnApiRunner", "--direct_running_mode=in_memory"]
COCO_NAMES = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 4: "airplane", 5: "bus", 6: "train",
              7: "truck"}


@pytest.fixture(autouse=True)
def input_folders(tmp_path):
    """parse_args refuses a missing INPUT; these tests name tmp_path/in and tmp_path/a."""
    for name in ("in", "a"):
        (tmp_path / name).mkdir(exist_ok=True)


@pytest.fixture(autouse=True)
def model_cache(tmp_path, monkeypatch):
    """Every test gets an empty model cache."""
    cache = tmp_path / "model-cache"
    monkeypatch.setenv("PII_BLUR_CACHE", str(cache))
    return cache


def yolo_onnx(rows: np.ndarray, layout: str = "v8", names=None, input_hw=(64, 64), batch=1) -> bytes:
    """A YOLO-layout ONNX model that outputs `rows` for every image.

    rows: per anchor [cx, cy, w, h, class scores...] (v8) or
    [cx, cy, w, h, objectness, class scores...] (v5), in network pixels.
    batch: fixed batch size, or None for a dynamic one. Anchors are padded
    to 32 with all-zero ones (real models have thousands).
    """
    rows = np.asarray(rows, np.float32)
    rows = np.concatenate([rows, np.zeros((max(0, 32 - len(rows)), rows.shape[1]), np.float32)])  # empty anchors
    constant = rows.T[None] if layout == "v8" else rows[None]
    batch_dim = batch if batch else "N"
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
         helper.make_node("Reshape", ["mean", "n11"], ["mean3"]),
         helper.make_node("Mul", ["mean3", "zero"], ["nothing"]),          # [N, 1, 1]: ties the batch size
         helper.make_node("Add", ["nothing", "rows"], ["output0"])],
        "fixed_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch_dim, 3, *input_hw])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch_dim, *constant.shape[1:]])],
        [numpy_helper.from_array(np.zeros((), np.float32), "zero"), numpy_helper.from_array(constant, "rows"),
         numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "n11")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": repr(dict(names)), "imgsz": repr(list(input_hw))})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def anchor(cx, cy, w, h, scores, objectness=None):
    return [cx, cy, w, h] + ([] if objectness is None else [objectness]) + list(scores)


def one_hot(index, score, classes=len(COCO_NAMES)):
    scores = [0.0] * classes
    scores[index] = score
    return scores


def yolo_detector(tmp_path, model_bytes, classes=("person", "car", "truck"), labels=(), min_probability=0.4,
                  **spec_fields):
    path = tmp_path / f"model-{hashlib.sha256(model_bytes).hexdigest()[:8]}.onnx"
    path.write_bytes(model_bytes)
    spec = ModelSpec("onnx-yolo", str(path), labels=tuple(labels), classes=tuple(classes), **spec_fields)
    return create_detector("onnx-yolo", DetectorConfig(min_probability=min_probability, threads=1, models=(spec,)))


def rounded(detections):
    return [(d.label, round(d.score, 4), tuple(round(v, 3) for v in d.box)) for d in detections]


# A 128 x 64 (w x h) image in a 64 x 64 network: scale 0.5, 16 px of padding above and below.
WIDE = np.full((64, 128, 3), 200, np.uint8)


def test_v8_output_is_decoded_letterboxed_suppressed_and_mapped_exactly(tmp_path):
    rows = [
        anchor(20, 30, 10, 20, one_hot(0, 0.9)),    # person
        anchor(21, 30, 10, 20, one_hot(0, 0.8)),    # same person, lower: suppressed by NMS
        anchor(20, 30, 10, 20, one_hot(2, 0.7)),    # a car in the same place: other label, kept
        anchor(40, 40, 8, 8, one_hot(1, 0.95)),     # bicycle: not a configured class
        anchor(50, 30, 6, 6, one_hot(0, 0.1)),      # under the floor (0.2 at p = 40)
        anchor(50, 42, 4, 4, one_hot(7, 0.3)),      # truck near miss: between floor and threshold
    ]
    detector = yolo_detector(tmp_path, yolo_onnx(rows, "v8", COCO_NAMES))
    assert detector.layout == "v8" and detector.threshold == 0.4 and detector.floor == 0.2
    assert set(detector.labels) == {"person", "car", "truck"}
    [found] = detector.detect([WIDE])
    assert rounded(found) == [
        ("person", 0.9, (30.0, 8.0, 50.0, 48.0)),    # x / 0.5; (y - 16) / 0.5
        ("car", 0.7, (30.0, 8.0, 50.0, 48.0)),
        ("truck", 0.3, (96.0, 48.0, 104.0, 56.0)),
    ]


def test_v5_output_multiplies_objectness_and_clips_to_the_image(tmp_path):
    rows = [
        anchor(20, 30, 10, 20, one_hot(0, 0.9), objectness=0.5),   # 0.45
        anchor(2, 20, 8, 8, one_hot(2, 1.0), objectness=0.8),      # over the left edge: clipped to x = 0
        anchor(40, 40, 8, 8, one_hot(0, 0.9), objectness=0.1),     # 0.09: dropped
    ]
    detector = yolo_detector(tmp_path, yolo_onnx(rows, "v5", COCO_NAMES))
    assert detector.layout == "v5"
    [found] = detector.detect([WIDE])
    assert rounded(found) == [("car", 0.8, (0.0, 0.0, 12.0, 16.0)), ("person", 0.45, (30.0, 8.0, 50.0, 48.0))]


def test_labels_map_class_ids_and_names_and_merge_classes_for_nms(tmp_path):
    rows = [anchor(20, 30, 10, 20, one_hot(2, 0.9)),      # car
            anchor(21, 30, 10, 20, one_hot(7, 0.85)),     # truck on the car: both are "vehicle", NMS merges
            anchor(40, 30, 10, 10, one_hot(0, 0.6))]      # person -> pedestrian
    labels = (("2", "vehicle"), ("truck", "vehicle"), ("person", "pedestrian"))
    detector = yolo_detector(tmp_path, yolo_onnx(rows, "v8", COCO_NAMES), classes=("vehicle", "pedestrian"),
                             labels=labels)
    [found] = detector.detect([WIDE])
    assert [(d.label, round(d.score, 3)) for d in found] == [("vehicle", 0.9), ("pedestrian", 0.6)]


def test_a_model_without_names_needs_labels_and_labels_must_exist(tmp_path):
    model = yolo_onnx([anchor(20, 30, 10, 20, [0.9])], "v8", names=None)
    with pytest.raises(YoloModelError, match="no 'names' metadata"):
        yolo_detector(tmp_path, model, classes=("face",))
    detector = yolo_detector(tmp_path, model, classes=("face",), labels=(("0", "face"),))
    assert [d.label for d in detector.detect([WIDE])[0]] == ["face"]
    with pytest.raises(YoloModelError, match="'human' is neither a class id nor"):
        yolo_detector(tmp_path, yolo_onnx([anchor(20, 30, 10, 20, one_hot(0, 0.9))], "v8", COCO_NAMES),
                      labels=(("human", "person"),))
    with pytest.raises(YoloModelError, match="none of the model's classes maps to"):
        yolo_detector(tmp_path, yolo_onnx([anchor(20, 30, 10, 20, one_hot(0, 0.9))], "v8", COCO_NAMES),
                      classes=("face",))


def test_dynamic_batches_keep_each_images_own_geometry(tmp_path):
    detector = yolo_detector(tmp_path, yolo_onnx([anchor(32, 32, 16, 16, one_hot(0, 0.9))], "v8", COCO_NAMES,
                                                 batch=None))
    tall = np.zeros((128, 64, 3), np.uint8)     # scale 0.5, 16 px of padding left and right
    found = detector.detect([WIDE, tall, WIDE])
    assert [rounded(f) for f in found] == [[("person", 0.9, (48.0, 16.0, 80.0, 48.0))],
                                           [("person", 0.9, (16.0, 48.0, 48.0, 80.0))],
                                           [("person", 0.9, (48.0, 16.0, 80.0, 48.0))]]


@pytest.mark.parametrize("shape, classes, layout", [
    ([1, 84, 8400], 80, "v8"), ([1, 25200, 85], 80, "v5"), ([1, 5, 8400], 1, "v8"), ([1, 8400, 6], 1, "v5"),
    ([1, 6, 8400], 0, "v8"), ([1, "anchors", 85], 0, "v5"), ([1, 84, "anchors"], 0, "v8")])
def test_layout_is_read_from_the_output_shape(shape, classes, layout):
    assert detect_layout(shape, classes) == layout


def test_two_models_of_one_backend_become_one_detector(tmp_path):
    faces = tmp_path / "faces.onnx"
    faces.write_bytes(yolo_onnx([anchor(20, 30, 10, 20, [0.9])], "v8", {0: "face"}))
    coco = tmp_path / "coco.onnx"
    coco.write_bytes(yolo_onnx([anchor(40, 30, 10, 20, one_hot(0, 0.8))], "v8", COCO_NAMES))
    specs = parse_model_config({"face": {"backend": "onnx-yolo", "path": "faces.onnx"},
                                "person": {"backend": "onnx-yolo", "path": "coco.onnx"},
                                "car": {"backend": "onnx-yolo", "path": "coco.onnx"}}, base=str(tmp_path))
    assert [spec.classes for spec in specs] == [("face",), ("person", "car")]
    config = BlurConfig(classes=("face", "person", "car"), threads=1, models=specs)
    assert config.backends() == ["onnx-yolo"]
    detector = create_detector("onnx-yolo", config.detector_config())
    assert isinstance(detector, DetectorGroup) and set(detector.labels) == {"face", "person", "car"}
    assert [d.label for d in detector.detect([WIDE])[0]] == ["face", "person"]


def test_model_config_is_validated_with_clear_messages(tmp_path):
    specs = parse_model_config({"plate": "onnx-ppocr-plate",
                                "person": {"backend": "onnx-yolo", "path": "m/coco.onnx", "input_size": 1280,
                                           "sha256": "AB" * 32}}, base=str(tmp_path))
    assert specs[0] == ModelSpec("onnx-ppocr-plate", classes=("plate",))
    assert specs[1].path == str(tmp_path / "m/coco.onnx") and specs[1].input_size == (1280, 1280)
    assert specs[1].sha256 == "ab" * 32
    for content, message in [
        ({"face": {"path": "x.onnx"}}, "'backend' is required"),
        ({"face": {"backend": "onnx-yolo", "pth": "x.onnx"}}, "unknown key"),
        ({"face": {"backend": "onnx-yolo", "iou": 2}}, "'iou'"),
        ({"face": {"backend": "onnx-yolo", "input_size": 100}}, "multiples of 32"),
        ({"face": {"backend": "imageai", "model_type": "yolov8"}}, "model_type"),
        (["face"], "mapping of class -> model"),
    ]:
        with pytest.raises(ModelConfigError, match=message):
            parse_model_config(content)


def test_per_class_backends_and_fingerprint():
    spec = ModelSpec("onnx-yolo", "/m/coco.onnx", sha256="1" * 64, classes=("person", "car", "face"))
    config = BlurConfig(classes=("face", "plate", "person"), models=(spec,))
    assert config.backends() == ["onnx-yolo", "onnx-ppocr-plate"]
    assert config.used_models()[0].classes == ("person", "face")
    assert BlurConfig().fingerprint() == BlurConfig(models=()).fingerprint()
    other_content = BlurConfig(classes=config.classes, models=(ModelSpec(**{**spec.__dict__, "sha256": "2" * 64}),))
    assert config.fingerprint() != other_content.fingerprint() != BlurConfig(classes=config.classes).fingerprint()
    with pytest.raises(ValueError, match="need a model in a --models config"):
        BlurConfig(classes=("truck",)).backends()
    with pytest.raises(ValueError, match="needs a model file"):
        create_detector("onnx-yolo", DetectorConfig())


# --- model files: fsspec, cache, sha256 ------------------------------------------------------------------------

@pytest.fixture
def http_folder(tmp_path):
    """A folder served by a local HTTP server: yields (folder, base URL, request log)."""
    folder = tmp_path / "served"
    folder.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            requests.append((self.command, self.path))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def test_model_over_http_is_cached_under_its_hash_and_verified(http_folder, model_cache, tmp_path):
    folder, base, requests = http_folder
    model = yolo_onnx([anchor(20, 30, 10, 20, one_hot(0, 0.9))], "v8", COCO_NAMES)
    (folder / "coco.onnx").write_bytes(model)
    digest = hashlib.sha256(model).hexdigest()

    fetched = fetch_model(f"{base}/coco.onnx", digest)
    assert fetched.path == str(model_cache / digest / "coco.onnx") and fetched.sha256 == digest
    assert open(fetched.path, "rb").read() == model and requests.count(("GET", "/coco.onnx")) == 1
    served = len(requests)
    assert fetch_model(f"{base}/coco.onnx", digest).path == fetched.path and len(requests) == served  # no network

    with pytest.raises(ModelFileError, match=f"has sha256 {digest}, but the model config expects {'0' * 64}"):
        fetch_model(f"{base}/coco.onnx", "0" * 64)
    assert sorted(os.listdir(model_cache)) == [digest]     # the rejected download left nothing behind
    with pytest.raises(ModelFileError, match="does not exist"):
        fetch_model(f"{base}/missing.onnx")

    # The same model through the model config and the detector.
    spec = ModelSpec("onnx-yolo", f"{base}/coco.onnx", sha256=digest, classes=("person",))
    detector = create_detector("onnx-yolo", DetectorConfig(threads=1, models=(spec,)))
    assert [d.label for d in detector.detect([WIDE])[0]] == ["person"]


def test_local_models_are_hashed_in_place_and_folders_by_tree(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"model bytes")
    assert fetch_model(str(path)).path == str(path)
    with pytest.raises(ModelFileError, match="expects"):
        fetch_model(str(path), "1" * 64)
    folder = tmp_path / "saved"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "v.index").write_bytes(b"index")
    lines = (f"{hashlib.sha256(b'graph').hexdigest()}  saved_model.pb\n"
             f"{hashlib.sha256(b'index').hexdigest()}  variables/v.index\n")
    assert tree_sha256(str(folder)) == hashlib.sha256(lines.encode()).hexdigest()
    assert fetch_model(str(folder), tree_sha256(str(folder))).path == str(folder)


def write_config(tmp_path, content) -> str:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(content))
    return str(path)


def test_cli_rejects_a_wrong_or_missing_model_at_start_up(tmp_path, http_folder, capsys):
    folder, base, _ = http_folder
    (folder / "coco.onnx").write_bytes(yolo_onnx([anchor(20, 30, 10, 20, one_hot(0, 0.9))], "v8", COCO_NAMES))
    (folder / "broken.onnx").write_bytes(b"not an onnx model")
    cases = [
        ({"person": {"backend": "onnx-yolo", "path": f"{base}/coco.onnx", "sha256": "0" * 64}}, "expects " + "0" * 64),
        ({"person": {"backend": "onnx-yolo", "path": f"{base}/gone.onnx"}}, "does not exist"),
        ({"person": {"backend": "onnx-yolo", "path": f"{base}/broken.onnx"}}, "not a loadable ONNX model"),
        ({"person": {"backend": "onnx-yolo", "path": str(tmp_path / "nowhere.onnx")}}, "does not exist"),
        ({"person": {"backend": "onnx-yolov8", "path": f"{base}/coco.onnx"}}, "unknown detector 'onnx-yolov8'"),
        ({"person": {"backend": "onnx-yolo", "path": f"{base}/coco.onnx", "labels": {"7": "lorry"}}},
         "none of the model's classes maps to"),
    ]
    for content, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--classes", "person",
                            "--models", write_config(tmp_path, content)])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err, message
    with pytest.raises(SystemExit):
        cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--models", str(tmp_path / "none.yaml")])
    assert "model config" in capsys.readouterr().err


def test_cli_pins_the_models_content_hash(tmp_path, http_folder):
    folder, base, _ = http_folder
    model = yolo_onnx([anchor(20, 30, 10, 20, one_hot(0, 0.9))], "v8", COCO_NAMES)
    (folder / "coco.onnx").write_bytes(model)
    config_path = tmp_path / "models.yaml"
    config_path.write_text("".join(f"{label}: {{backend: onnx-yolo, path: '{base}/coco.onnx'}}\n"
                                   for label in ("person", "car", "truck")))
    args, _ = cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--classes", "person,car,truck",
                              "--models", str(config_path)])
    [spec] = args.config.models
    assert spec.sha256 == hashlib.sha256(model).hexdigest() and spec.classes == ("person", "car", "truck")
    assert args.config.device == "cpu"


def test_cuda_is_a_clear_start_up_error_without_onnxruntime_gpu(tmp_path, capsys):
    import onnxruntime
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(DeviceError, match=r"CUDAExecutionProvider.*has \['"):
        onnx_providers("cuda")
    with pytest.raises(SystemExit):
        cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--device", "cuda"])
    assert "pii-blur[gpu]" in capsys.readouterr().err
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_every_new_option_states_its_default():
    for action in cli.make_parser()._actions:
        if action.option_strings and action.dest in ("models", "device"):
            assert "default" in action.help


# --- seed mode: whole persons and vehicles through the pipeline -----------------------------------------------

def test_whole_object_blur_hides_faces_and_plates_inside_the_object(astronaut):
    car = render_car_with_plate()
    blurred_car = blur_detections(car, [Detection("car", 0.9, (120, 120, 600, 450))])
    plate = (290, 300, 430, 340)
    assert high_frequency_energy(blurred_car, plate) < 0.2 * high_frequency_energy(car, plate)
    blurred_person = blur_detections(astronaut, [Detection("person", 0.9, (110, 20, 390, 512))])
    assert (high_frequency_energy(blurred_person, ASTRONAUT_FACE_BOX)
            < 0.2 * high_frequency_energy(astronaut, ASTRONAUT_FACE_BOX))
    assert style_for("truck") == WHOLE_OBJECT_STYLE and WHOLE_OBJECT_STYLE.axis_scale == (1.2, 1.2)


def test_seed_mode_blurs_whole_persons_and_vehicles_with_the_seed_ellipse(tmp_path):
    """--classes person,car,truck with a COCO YOLO model from --models, through the real pipeline."""
    # 320 x 240 in a 64 x 64 network: scale 0.2, 8 px of padding above and below.
    rows = [anchor(28, 32, 16, 32, one_hot(0, 0.9)),    # person at (100, 40, 180, 200)
            anchor(50, 52, 20, 16, one_hot(7, 0.8)),    # truck at (200, 180, 300, 260) -> clipped to 240
            anchor(10, 20, 8, 8, one_hot(1, 0.9))]      # bicycle: not asked for
    (tmp_path / "coco.onnx").write_bytes(yolo_onnx(rows, "v8", COCO_NAMES))
    config = write_config(tmp_path, {label: {"backend": "onnx-yolo", "path": str(tmp_path / "coco.onnx")}
                                     for label in ("person", "car", "truck")})
    rng = np.random.default_rng(5)
    photo = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir(exist_ok=True)
    Image.fromarray(photo).save(tmp_path / "in" / "street.png")
    args, _ = cli.parse_args([str(tmp_path / "in"), str(tmp_path / "out"), "--classes", "person,car,truck",
                              "--models", config])

    with test_pipeline.TestPipeline(options=PipelineOptions(LOCAL), blocking=True) as p:
        reports = pipeline.build(p, args)
        assert_that(reports | beam.Map(lambda r: (os.path.basename(r.path), r.status.value)),
                    equal_to([("street.png", "blurred")]))

    [record] = [json.loads(line) for line in open(args.report)][:-1]
    assert [(d["label"], d["box"]) for d in record["detections"]] == [("person", [100, 40, 180, 200]),
                                                                      ("truck", [200, 180, 300, 240])]
    expected = blur_detections(photo, [Detection("person", 0.9, (100, 40, 180, 200)),
                                       Detection("truck", 0.8, (200, 180, 300, 240))])
    output = np.asarray(Image.open(tmp_path / "out" / "street.png"))
    assert np.array_equal(output, expected)           # exactly the seed's 1.2x feathered ellipses
    assert np.array_equal(output[:, :60], photo[:, :60])


# --- RunInference -----------------------------------------------------------------------------------------------

@register("test-dark-fails")
class DarkFails(Detector):
    """Finds one 'face' covering each image; raises on an all-black image. Records the batches it sees."""

    labels = ("face",)
    threshold = 0.4
    calls: list = []

    def __init__(self, config):
        pass

    def detect(self, images_rgb, rescale=True):
        DarkFails.calls.append([image.shape for image in images_rgb])
        if any(image.max() == 0 for image in images_rgb):
            raise RuntimeError("black image")
        return [[Detection("face", 0.9, (0.0, 0.0, float(image.shape[1]), float(image.shape[0])))]
                for image in images_rgb]


def _viewed(name: str, image: np.ndarray) -> ViewedInput:
    decoded = DecodedInput(InputFile(url=name, relative_path=name, output_url="out/" + name), b"x", None,
                           "perspective", {})
    return ViewedInput(decoded, anonymize.Views("perspective", [image]))


def test_views_handler_keeps_one_images_failure_to_that_image():
    handler = ViewsModelHandler("test-dark-fails", DetectorConfig(), threads=1)
    batch = [_viewed("a.jpg", np.full((4, 6, 3), 9, np.uint8)), _viewed("dark.jpg", np.zeros((4, 6, 3), np.uint8))]
    found, dark = handler.run_inference(batch, handler.load_model())
    assert found is batch[0]
    assert found.found_by == [(0.4, [[Detection("face", 0.9, (0.0, 0.0, 6.0, 4.0))]])]
    assert isinstance(dark, FileReport) and dark.status == Status.FAILED
    assert (dark.path, dark.reason) == ("dark.jpg", "detection failed: RuntimeError: black image")
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 1}
    assert not handler.share_model_across_processes()
    assert ViewsModelHandler("x", DetectorConfig(), 1, share_across_processes=True).share_model_across_processes()


def test_detect_pii_sends_failed_images_on_as_failed_reports(monkeypatch):
    """Through RunInference: the dark image ends as a failed report, the others carry their detections."""
    config = BlurConfig(classes=("face",))
    monkeypatch.setattr(BlurConfig, "backends", lambda self: ["test-dark-fails"])
    elements = [_viewed("a.jpg", np.full((4, 6, 3), 9, np.uint8)), _viewed("dark.jpg", np.zeros((4, 6, 3), np.uint8))]
    with test_pipeline.TestPipeline(options=PipelineOptions(LOCAL)) as p:
        out = p | beam.Create(elements) | DetectPII(config)
        assert_that(out | beam.Map(_outcome), equal_to([("a.jpg", "found 1"),
                                                       ("dark.jpg", "detection failed: RuntimeError: black image")]))


def _outcome(element):
    if isinstance(element, FileReport):
        return element.path, element.reason
    return element.decoded.input.url, f"found {len(element.found_by[0][1][0])}"


