import os
import sys
import threading

import cv2
import numpy as np
import pytest
import skimage.data

from conftest import ASTRONAUT_FACE_BOX, render_car_with_plate
from pii_blur.models import DetectorConfig, available_detectors, base, create_detector, ppocr_plate


def above_threshold(detector, image):
    """Detections that would be blurred (detect() also returns near misses)."""
    return [d for d in detector.detect([image])[0] if d.score >= detector.threshold]


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_centerface_finds_the_astronaut(face_detector, astronaut):
    faces = above_threshold(face_detector, astronaut)
    assert len(faces) == 1
    assert faces[0].label == "face" and faces[0].score > 0.8
    assert iou(faces[0].box, ASTRONAUT_FACE_BOX) > 0.7


def test_centerface_scales_boxes_to_any_input_size(face_detector, astronaut):
    big = cv2.resize(astronaut, (1536, 1024))   # non-square, non-multiple-of-32 after scaling
    faces = above_threshold(face_detector, big)
    expected = (ASTRONAUT_FACE_BOX[0] * 3, ASTRONAUT_FACE_BOX[1] * 2, ASTRONAUT_FACE_BOX[2] * 3, ASTRONAUT_FACE_BOX[3] * 2)
    assert len(faces) == 1 and iou(faces[0].box, expected) > 0.6


def test_no_faces_or_plates_in_a_rocket(face_detector, plate_detector):
    rocket = skimage.data.rocket()
    assert above_threshold(face_detector, rocket) == []
    assert above_threshold(plate_detector, rocket) == []


def test_plate_detector_covers_a_rendered_plate(plate_detector):
    plates = above_threshold(plate_detector, render_car_with_plate())
    assert len(plates) == 1
    x1, y1, x2, y2 = plates[0].box
    assert x1 <= 295 and y1 <= 305 and x2 >= 425 and y2 >= 335   # the whole plate, border included


def test_higher_probability_means_fewer_faces(astronaut):
    crowd = np.concatenate([astronaut, cv2.resize(astronaut, (256, 256)).repeat(2, 0).repeat(2, 1)], axis=1)
    low = above_threshold(create_detector("onnx-centerface", DetectorConfig(min_probability=0.1, threads=1)), crowd)
    strict = create_detector("onnx-centerface", DetectorConfig(min_probability=1.0, threads=1))
    high = above_threshold(strict, crowd)
    assert len(high) < len(low) and all(d.score >= strict.threshold for d in high)


def test_int8_centerface_threshold_is_fp32s_times_the_measured_factor():
    """int8's heatmap peaks lower; its threshold (and so its near-miss floor) is scaled, fp32's is not."""
    from pii_blur.models.centerface import INT8_THRESHOLD_FACTOR, threshold_for

    assert 0.8 <= INT8_THRESHOLD_FACTOR <= 1.0
    assert threshold_for(0.4) == threshold_for(0.4, "fp32") == pytest.approx(0.2)
    assert threshold_for(0.4, "int8") == pytest.approx(0.2 * INT8_THRESHOLD_FACTOR)
    for precision in ("int8", "fp32"):
        detector = create_detector("onnx-centerface", DetectorConfig(min_probability=0.4, threads=1,
                                                                     precision=precision))
        assert detector.precision == precision
        assert detector.threshold == pytest.approx(threshold_for(0.4, precision))
        assert detector.floor == pytest.approx(0.5 * detector.threshold)


def test_centerface_defaults_to_int8():
    """README, "int8 or fp32": int8 CenterFace (at INT8_THRESHOLD_FACTOR) kept blur recall within 0.5
    points of fp32 on every dev-face bin and panorama pitch band."""
    from pii_blur.models.base import DEFAULT_PRECISION

    assert DEFAULT_PRECISION["onnx-centerface"] == "int8"
    assert create_detector("onnx-centerface", DetectorConfig(threads=1)).precision == "int8"


def test_near_misses_score_between_floor_and_threshold(face_detector, astronaut):
    all_found = face_detector.detect([astronaut])[0]
    assert all(d.score >= face_detector.floor for d in all_found)
    assert face_detector.floor == 0.5 * face_detector.threshold


def test_unknown_detector_lists_the_valid_ones():
    with pytest.raises(ValueError, match="onnx-centerface"):
        create_detector("nope", DetectorConfig())
    assert {"onnx-centerface", "onnx-ppocr-plate"} <= set(available_detectors())


def test_vendored_centerface_is_dynamic_with_constant_weights():
    """tools/derive_centerface.py made the shipped file: one N x 3 x H x W
    input and the weights only as initializers (so ONNX Runtime folds the
    batch norms); deriving it again changes nothing."""
    import onnx

    from pii_blur.models.weights import read_vendored

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
    from derive_centerface import derive

    shipped = read_vendored("centerface_dynamic.onnx")
    graph = onnx.load_from_string(shipped).graph
    assert [value.name for value in graph.input] == ["input.1"]
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, "H", "W"]
    assert derive(shipped) == shipped


def test_the_recogniser_reads_crops_of_similar_width_together(plate_detector, monkeypatch):
    """A long text line must not pad the short plate crops to its width: one batch per width group."""
    car = render_car_with_plate("KT52 XRW")
    plate = np.array([[290, 300], [430, 300], [430, 340], [290, 340]], np.float32)
    long_line = np.array([[10, 10], [710, 10], [710, 40], [10, 40]], np.float32)   # 1120 px at height 48: capped
    reader = plate_detector.reader
    widths = []
    run = reader.session.run
    monkeypatch.setattr(reader.session, "run", lambda names, feed: widths.append(feed[reader.input_name].shape[3])
                        or run(names, feed), raising=False)
    texts = reader.read(car, [plate, long_line, plate])
    assert texts[0] == texts[2] and texts[0].replace(" ", "") == "KT52XRW"
    assert sorted(widths) == [168, ppocr_plate.REC_MAX_WIDTH]   # the plates at their own 140 * 48 / 40 px


def test_plate_input_is_the_scaled_bgr_planes_the_int8_detector_was_calibrated_on(astronaut):
    """preprocess writes its planes in place; the values must stay those of the plain formula,
    which tools/derive_int8.py calibrated on, to the last bit."""
    photo = astronaut[:267, :400]
    planes = ppocr_plate.preprocess(photo, rescale=True)
    net_h, net_w = ppocr_plate.network_size(photo.shape[:2], rescale=True)
    resized = cv2.resize(photo[:, :, ::-1], (net_w, net_h), interpolation=cv2.INTER_LINEAR)
    reference = ((resized.astype(np.float32) / 127.5) - 1.0).transpose(2, 0, 1)[None]
    assert planes.shape == (1, 3, 736, 1120) and planes.flags.c_contiguous
    assert planes.dtype == np.float32 and np.array_equal(planes, reference)


def test_plate_input_at_the_network_size_is_the_image_in_bgr_unresampled(astronaut):
    """Panorama plate views come shrunk to the network's size; they are only turned to BGR."""
    view = astronaut[:480, :320]
    assert ppocr_plate.network_size(view.shape[:2], rescale=False) == view.shape[:2]
    assert np.array_equal(ppocr_plate.resized_bgr(view, rescale=False), view[:, :, ::-1])
    odd = astronaut[:470, :310]   # stretched to 480 x 320
    assert ppocr_plate.resized_bgr(odd, rescale=False).shape == (480, 320, 3)


def test_vendored_plate_detector_is_folded():
    """tools/derive_ppocr_det.py made the shipped detector: no x * clip(x + 3, 0, 6) / 6 left, the
    hard-swishes as HardSigmoid gates, and deriving it again changes nothing."""
    import onnx

    from pii_blur.models.weights import read_vendored

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
    from derive_ppocr_det import derive

    shipped = read_vendored("ppocrv4_det_folded.onnx")
    ops = [node.op_type for node in onnx.load_from_string(shipped).graph.node]
    assert "Clip" not in ops and "Div" not in ops and ops.count("HardSigmoid") == 34
    again, counts = derive(shipped)
    assert again == shipped and not any(counts.values())


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_each_precision_finds_the_astronaut_and_a_plate(precision, astronaut):
    """int8 QDQ models run on any CPU ONNX Runtime supports (with or without VNNI)."""
    config = DetectorConfig(min_probability=0.4, threads=1, precision=precision)
    faces = above_threshold(create_detector("onnx-centerface", config), astronaut)
    assert len(faces) == 1 and iou(faces[0].box, ASTRONAUT_FACE_BOX) > 0.7
    plates = above_threshold(create_detector("onnx-ppocr-plate", config), render_car_with_plate())
    assert len(plates) == 1
    x1, y1, x2, y2 = plates[0].box
    assert x1 <= 295 and y1 <= 305 and x2 >= 425 and y2 >= 335


def test_int8_weights_are_quantised_copies_of_the_fp32_ones():
    """tools/derive_int8.py's output: QDQ with per-channel int8 weights, a quarter of the size or less."""
    import onnx

    from pii_blur.models.weights import read_vendored, weights_for

    for name in ("centerface_dynamic.onnx", "ppocrv4_det_folded.onnx"):
        quantised = read_vendored(weights_for(name, "int8"))
        assert len(quantised) < 0.35 * len(read_vendored(name))
        ops = {node.op_type for node in onnx.load_from_string(quantised).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_unknown_precision_lists_the_valid_ones():
    with pytest.raises(ValueError, match="int8"):
        create_detector("onnx-centerface", DetectorConfig(precision="fp16"))


def test_same_size_images_share_a_batch_with_unchanged_results(face_detector, plate_detector, astronaut, monkeypatch):
    from pii_blur.models.base import BATCH_PIXELS, same_size_batches

    assert face_detector.batch_pixels == plate_detector.batch_pixels == BATCH_PIXELS["cpu"] == 1

    assert same_size_batches([(32, 32), (64, 32), (32, 32)], max_pixels=4096) == [[0, 2], [1]]
    assert same_size_batches([(32, 32)] * 3, max_pixels=2048) == [[0, 1], [2]]
    car = render_car_with_plate()
    views = [astronaut, astronaut[:, ::-1].copy(), cv2.resize(car, (512, 512))]
    for detector in (face_detector, plate_detector):
        monkeypatch.setattr(detector, "batch_pixels", BATCH_PIXELS["cuda"])   # batched as on a GPU
        together = detector.detect(views, rescale=False)
        alone = [detector.detect([view], rescale=False)[0] for view in views]
        for a, b in zip(together, alone):
            assert [d.label for d in a] == [d.label for d in b]
            assert np.allclose([d.box for d in a], [d.box for d in b], atol=1e-2)


def test_precision_reaches_the_detectors_and_the_fingerprint():
    from pii_blur.config import BlurConfig
    from pii_blur.models.base import DEFAULT_PRECISION

    assert BlurConfig(precision="int8").detector_config().precision == "int8"
    assert BlurConfig(precision="int8").fingerprint() != BlurConfig(precision="fp32").fingerprint()
    assert BlurConfig().precisions() == DEFAULT_PRECISION
    for precision in ("int8", "fp32"):
        everywhere = set(DEFAULT_PRECISION.values()) == {precision}
        assert (BlurConfig().fingerprint() == BlurConfig(precision=precision).fingerprint()) == everywhere


def test_the_core_code_and_search_overrides_are_part_of_the_fingerprint(tmp_path, monkeypatch):
    """An upgrade that changes how images are searched redoes older outputs; wiring changes do not."""
    import shutil
    from pathlib import Path

    import pii_blur
    from pii_blur import manifest
    from pii_blur.config import BlurConfig

    package = tmp_path / "pii_blur"
    shutil.copytree(os.path.dirname(pii_blur.__file__), package, ignore=shutil.ignore_patterns("__pycache__"))
    original = manifest.core_source_digest(package)
    assert original == manifest.core_source_digest(Path(pii_blur.__file__).parent)
    (package / "pipeline" / "__init__.py").write_text((package / "pipeline" / "__init__.py").read_text() + "\n# x\n")
    manifest.core_source_digest.cache_clear()
    assert manifest.core_source_digest(package) == original
    ppocr = package / "models" / "ppocr_plate.py"
    ppocr.write_text(ppocr.read_text().replace("MIN_SHORT_SIDE = 736", "MIN_SHORT_SIDE = 544"))
    manifest.core_source_digest.cache_clear()
    assert manifest.core_source_digest(package) != original

    default = BlurConfig().fingerprint()
    monkeypatch.setattr(manifest, "core_source_digest", lambda: "another version of the code")
    assert BlurConfig().fingerprint() != default
    monkeypatch.undo()
    monkeypatch.setenv("PII_BLUR_PANO_SEARCH", "ring_resolution=0.8")
    assert BlurConfig().fingerprint() != default


def test_a_detector_built_ahead_is_handed_out_once(astronaut, monkeypatch):
    built_on = []
    build = base._build

    def counted(name, config):
        built_on.append((name, threading.current_thread().name))
        return build(name, config)

    monkeypatch.setattr(base, "_build", counted)
    config = DetectorConfig(min_probability=0.41)   # a config of this test's own
    base.build_ahead(["onnx-centerface", "onnx-ppocr-plate", "onnx-yolo", "no-such-backend"], config)
    ahead = create_detector("onnx-centerface", config)
    create_detector("onnx-ppocr-plate", config)
    again = create_detector("onnx-centerface", config)
    # Only the vendored-weights backends are built ahead; a model-file one and an unknown
    # name are left to create_detector, which raises for them as before.
    assert built_on == [("onnx-centerface", "pii-blur-build-ahead"), ("onnx-ppocr-plate", "pii-blur-build-ahead"),
                        ("onnx-centerface", "MainThread")]
    assert ahead is not again
    assert above_threshold(ahead, astronaut) == above_threshold(again, astronaut) != []
    assert not base._BUILT_AHEAD


def test_a_detector_that_fails_to_build_ahead_raises_where_it_is_asked_for():
    config = DetectorConfig(device="tpu")
    base.build_ahead(["onnx-centerface"], config)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        create_detector("onnx-centerface", config)
    assert not base._BUILT_AHEAD


def _graph_fed_floats(code_model, input_name):
    """An int8 model as it was before code_input: float NCHW input `input_name`, quantised by a
    QuantizeLinear with the step and zero point that its first DequantizeLinear still names."""
    import onnx

    graph = code_model.graph
    [to_planes] = [node for node in graph.node if node.op_type == "Transpose" and node.input[0] == "codes"]
    [dequantise] = [node for node in graph.node if to_planes.output[0] in node.input]
    quantise = onnx.helper.make_node("QuantizeLinear", [input_name, *dequantise.input[1:]], [to_planes.output[0]])
    nodes = [quantise, *(node for node in graph.node if node is not to_planes)]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.remove(graph.input[0])
    graph.input.insert(0, onnx.helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, ["N", 3, "H", "W"]))
    return code_model


@pytest.mark.parametrize("module, fp32_name, input_name", [
    ("centerface", "centerface_dynamic.onnx", "input.1"), ("ppocr_plate", "ppocrv4_det_folded.onnx", "x")])
def test_int8_models_take_8_bit_codes_with_the_same_outputs_to_the_bit(module, fp32_name, input_name, astronaut):
    """tools/derive_int8.py's code_input: each vendored int8 model takes its input's 8-bit codes, NHWC,
    and every output is what its graph gives the float planes that the fp32 model takes."""
    import importlib

    import onnx

    from pii_blur.models.base import input_codes, onnx_session
    from pii_blur.models.weights import read_vendored, weights_for

    detector_module = importlib.import_module(f"pii_blur.models.{module}")
    shipped = read_vendored(weights_for(fp32_name, "int8"))
    by_codes = onnx_session(shipped, 1, "cpu")
    [code_input] = by_codes.get_inputs()
    assert code_input.type == "tensor(uint8)" and code_input.shape[3] == 3
    codes = input_codes(by_codes)
    fed_floats = _graph_fed_floats(onnx.load_from_string(shipped), input_name)
    by_floats = onnx_session(fed_floats.SerializeToString(), 1, "cpu")
    for image, rescale in [(astronaut, True), (astronaut[:300, :450], True), (astronaut[:320, :448], False)]:
        fed = detector_module.codes(image, rescale, codes)
        assert fed.dtype == np.uint8 and fed.flags.c_contiguous
        outputs = by_codes.run(None, {"codes": fed})
        reference = by_floats.run(None, {input_name: detector_module.preprocess(image, rescale)})
        assert all(np.array_equal(a, b) for a, b in zip(outputs, reference))
    assert input_codes(onnx_session(read_vendored(fp32_name), 1, "cpu")) is None   # fp32 takes float planes


def _quantised_identity(step: float, zero_point: int = 0):
    """A float NCHW input quantised at `step` and `zero_point`, dequantised and returned."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("QuantizeLinear", ["x", "step", "zero"], ["quantised"]),
             helper.make_node("DequantizeLinear", ["quantised", "step", "zero"], ["y"])]
    graph = helper.make_graph(nodes, "identity", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 5])],
                              [numpy_helper.from_array(np.array(step, np.float32), "step"),
                               numpy_helper.from_array(np.array(zero_point, np.uint8), "zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("step, zero_point, scale, records_codes",
                         [(0.9995, 0, 1.0, False), (0.0079, 128, 1 / 127.5, True)])
def test_code_input_keeps_every_output(step, zero_point, scale, records_codes):
    """Pixels as the fp32 input (x, or x / 127.5 - 1 as the text detector takes them): the model made to take
    codes gives, fed each pixel's code, what the original gives the floats; codes that are not the pixel
    values themselves are recorded in the model."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
    from derive_int8 import code_input

    from pii_blur.models.base import input_codes, onnx_session, to_codes

    image = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    values = np.arange(256, dtype=np.float32) * np.float32(scale) - np.float32(scale != 1.0)
    original = _quantised_identity(step, zero_point)
    expected = onnx_session(original.SerializeToString(), 1, "cpu").run(
        None, {"x": values[image].transpose(2, 0, 1)[None]})[0]
    converted = onnx_session(code_input(original, values).SerializeToString(), 1, "cpu")
    codes = input_codes(converted)
    assert (not np.array_equal(codes, np.arange(256))) == records_codes
    assert np.array_equal(converted.run(None, {"codes": to_codes(image, codes)})[0], expected)


def _hard_sigmoid_gate(step: float, zero_point: int, alpha: float, beta: float):
    """uint8 codes at `step` and `zero_point`, through DequantizeLinear, HardSigmoid and QuantizeLinear
    at step 1 / 255.125 (what calibration gives a gate's [0, 1]), as the quantiser leaves a gate."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("DequantizeLinear", ["x", "step", "zero"], ["values"]),
             helper.make_node("HardSigmoid", ["values"], ["gate"], alpha=alpha, beta=beta, name="gate"),
             helper.make_node("QuantizeLinear", ["gate", "gate_step", "gate_zero"], ["y"], name="gate_quantise")]
    graph = helper.make_graph(nodes, "gate", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 32, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 4, 32, 64])],
                              [numpy_helper.from_array(np.array(step, np.float32), "step"),
                               numpy_helper.from_array(np.array(zero_point, np.uint8), "zero"),
                               numpy_helper.from_array(np.array(1 / 255.125, np.float32), "gate_step"),
                               numpy_helper.from_array(np.array(0, np.uint8), "gate_zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("step, zero_point, alpha, beta", [
    (0.17743167, 128, 1 / 6, 0.5), (0.33709943, 127, 1 / 6, 0.5), (0.061579958, 128, 1 / 6, 0.5),
    (0.057765592, 145, 0.2, 0.5), (0.2212902, 181, 0.2, 0.5), (0.01, 0, 1 / 6, 0.5)])
def test_gates_as_sums_give_every_code_the_same_gate(step, zero_point, alpha, beta):
    """tools/derive_int8.py's gates_as_sums: a hard-sigmoid gate made an int8 sum gives each of the 256
    input codes the code the float gate gave it (steps and zero points of the text detector's gates)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
    from derive_int8 import gates_as_sums

    from pii_blur.models.base import onnx_session

    codes = np.tile(np.arange(256, dtype=np.uint8), 32).reshape(1, 4, 32, 64)
    original = _hard_sigmoid_gate(step, zero_point, alpha, beta)
    expected = onnx_session(original.SerializeToString(), 1, "cpu").run(None, {"x": codes})[0]
    summed = gates_as_sums(_hard_sigmoid_gate(step, zero_point, alpha, beta))
    assert [node.op_type for node in summed.graph.node] == ["DequantizeLinear", "DequantizeLinear", "Add",
                                                            "QuantizeLinear"]
    assert np.array_equal(onnx_session(summed.SerializeToString(), 1, "cpu").run(None, {"x": codes})[0], expected)
    assert len(set(expected.ravel())) > 15   # the codes span the gate's slope, not only its clipped ends


def test_the_shipped_text_detector_has_no_float_gates():
    import onnx

    from pii_blur.models.weights import read_vendored

    model = onnx.load_from_string(read_vendored("ppocrv4_det_folded_int8.onnx"))
    assert not [node for node in model.graph.node if node.op_type == "HardSigmoid"]
    assert sum(node.name.endswith("_as_sum") for node in model.graph.node) == 34
