"""Derive the vendored int8 models from the vendored fp32 ones.

    python tools/derive_int8.py DATA_DIR [--models centerface,ppocr_det]

DATA_DIR is the evaluation data folder (its faces/ and plates/ photos are the
calibration set; nothing else is read). For each model this writes
pii_blur/models/weights/<name>_int8.onnx and prints its size and sha256,
to be recorded in pii_blur/models/weights.py and weights/NOTICE.

The recipe: the opset raised to 13 (per-channel QDQ needs it), ONNX
Runtime's quantisation pre-processing (shape inference, batch norms folded),
then onnxruntime.quantization.quantize_static in QDQ format with per-channel
int8 weights and uint8 activations; the output heads stay fp32. Activation
ranges come from histograms of the calibration inputs, cut at the
CALIBRATION_PERCENTILE-th percentile: min/max ranges let rare large
activations set a step too coarse for the rest (face blur recall fell 1.9
points with them, and none with the percentile). Each photo is fed exactly as
the detector feeds a photo (the detector module's own `preprocess`).

Each quantised model then takes its input's 8-bit codes (code_input): uint8
NHWC, with a Transpose in place of the input's QuantizeLinear, and the code
of each pixel value in its metadata. The detector maps the resized 8-bit
image to those codes (for CenterFace, whose input is the pixels at a step
of 0.9995, they are the pixel values themselves), so ONNX Runtime gets the
bytes it would have quantised the float planes to, with no float copy, and
its own transpose to NHWC cancels the Transpose. The outputs are the same to
the bit.

Its hard-sigmoid gates, which ONNX Runtime would run in float between a
dequantised and a quantised copy, become int8 sums that it runs on the bytes
(gates_as_sums; the text detector's only): the same outputs to the bit, and
the text detector 10 % faster.

The photos are taken in sorted order, every CALIBRATION_STRIDE-th one of each
folder, and with onnxruntime 1.32 the result was the vendored bytes in two of
three runs; the third folded CenterFace's last ReLU into the convolution
before it. Compare the printed hashes with weights/NOTICE before vendoring.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pii_blur.models import centerface, ppocr_plate  # noqa: E402
from pii_blur.models.base import PIXEL_CODES  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[1] / "pii_blur" / "models" / "weights"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
# Every n-th photo (sorted) of each calibration folder.
CALIBRATION_STRIDE = 6
CALIBRATION_PERCENTILE = 99.99

# name -> (fp32 file, the module whose preprocess feeds it, data subfolders calibrated on)
MODELS = {
    "centerface": ("centerface_dynamic.onnx", centerface, ("faces", "plates")),
    "ppocr_det": ("ppocrv4_det_folded.onnx", ppocr_plate, ("plates", "faces")),
}


def consumers_of(graph: onnx.GraphProto) -> dict[str, list]:
    """The nodes that read each tensor of `graph`, by tensor name."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def output_heads(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that make the graph's outputs, and of the node before each
    when it feeds only those (CenterFace's 1x1 head convolutions, each detector's
    final Sigmoid and the layer before it). They stay fp32: they are a sliver of
    the time, and an int8 output grid moves every score (CenterFace's heatmap by
    up to 0.18 when its heads were int8)."""
    outputs = {value.name for value in model.graph.output}
    producer = {name: node for node in model.graph.node for name in node.output}
    consumers = consumers_of(model.graph)
    heads = [producer[name] for name in outputs]
    head_names = {node.name for node in heads}
    for node in heads:
        before = producer.get(node.input[0])
        if before is not None and all(c.name in head_names for name in before.output for c in consumers.get(name, [])):
            head_names.add(before.name)
    return sorted(head_names)


def code_input(model: onnx.ModelProto, pixel_values: np.ndarray) -> onnx.ModelProto:
    """The quantised `model` taking its input's 8-bit codes, uint8 NHWC (N x H x W x 3), instead of float NCHW.

    pixel_values: float32 (256,), the float input that the detector's
    preprocess makes of each 8-bit pixel value. The input's QuantizeLinear
    gives each one a code (worked out with ONNX Runtime's own arithmetic);
    the model records them as metadata PIXEL_CODES (base.pixel_codes) unless
    they are the pixel values themselves, and a Transpose to NCHW takes that
    node's place. A detector that maps pixels to those codes (cv2.LUT) gets
    every output to the bit.

    Raises:
        ValueError: the input is not quantised by one QuantizeLinear.
    """
    import onnxruntime

    graph = model.graph
    source = graph.input[0]
    quantise = [node for node in graph.node if source.name in node.input]
    if len(quantise) != 1 or quantise[0].op_type != "QuantizeLinear":
        raise ValueError(f"the input {source.name!r} does not go through one QuantizeLinear")
    quantise = quantise[0]
    value_info = onnx.helper.make_tensor_value_info
    probe = onnx.helper.make_model(
        onnx.helper.make_graph([quantise], "probe", [value_info(source.name, onnx.TensorProto.FLOAT, [256])],
                               [value_info(quantise.output[0], onnx.TensorProto.UINT8, [256])],
                               [init for init in graph.initializer if init.name in quantise.input[1:]]),
        opset_imports=model.opset_import, ir_version=model.ir_version)
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    codes = session.run(None, {source.name: np.asarray(pixel_values, np.float32)})[0]
    if not np.array_equal(codes, np.arange(256)):
        onnx.helper.set_model_props(model, {**{prop.key: prop.value for prop in model.metadata_props},
                                            PIXEL_CODES: codes.astype(np.uint8).tobytes().hex()})
    to_planes = onnx.helper.make_node("Transpose", ["codes"], [quantise.output[0]], perm=[0, 3, 1, 2],
                                      name="codes_to_planes")
    nodes = [to_planes, *(node for node in graph.node if node is not quantise)]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.remove(source)
    graph.input.insert(0, value_info("codes", onnx.TensorProto.UINT8, ["N", "H", "W", 3]))
    onnx.checker.check_model(model)
    return model


def gates_as_sums(model: onnx.ModelProto) -> onnx.ModelProto:
    """The quantised `model` with each hard-sigmoid gate made an int8 sum that ONNX Runtime fuses.

    A gate DequantizeLinear -> HardSigmoid -> QuantizeLinear (zero point 0)
    runs in float between a dequantised and a quantised copy of the tensor. clip(alpha * x + beta, 0, 1)
    at output step s has the codes of x + beta / alpha at step s / alpha,
    clipped at codes 0 and 255, which is what quantising saturates to. So an
    Add of the constant beta / alpha (one code at that step) takes the
    HardSigmoid's place and the QuantizeLinear gets step s / alpha; the
    gate's consumers still read its codes at step s. ONNX Runtime runs
    DequantizeLinear -> Add -> QuantizeLinear as one QLinearAdd on the bytes.
    Checked with ONNX Runtime on all 256 input codes of each of the text
    detector's 34 gates: the same codes (so every output is the same to the bit).
    """
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers = consumers_of(graph)
    nodes = []
    for node in graph.node:
        users = consumers.get(node.output[0], []) if node.op_type == "HardSigmoid" else []
        if not (len(users) == 1 and users[0].op_type == "QuantizeLinear"
                and onnx.numpy_helper.to_array(initializers[users[0].input[2]]) == 0):
            nodes.append(node)
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        alpha, beta = np.float32(attributes.get("alpha", 0.2)), np.float32(attributes.get("beta", 0.5))
        quantise = users[0]
        step = onnx.numpy_helper.to_array(initializers[quantise.input[1]])
        shift = f"{node.name}_shift"
        graph.initializer.extend([
            onnx.numpy_helper.from_array(np.array(1, np.uint8), f"{shift}_code"),
            onnx.numpy_helper.from_array(np.array(beta / alpha, np.float32), f"{shift}_step"),
            onnx.numpy_helper.from_array(np.array(0, np.uint8), f"{shift}_zero_point"),
            onnx.numpy_helper.from_array(np.array(step / alpha, np.float32), f"{quantise.name}_sum_step")])
        nodes.append(onnx.helper.make_node("DequantizeLinear",
                                           [f"{shift}_code", f"{shift}_step", f"{shift}_zero_point"], [shift],
                                           name=f"{shift}_DequantizeLinear"))
        nodes.append(onnx.helper.make_node("Add", [node.input[0], shift], [node.output[0]], name=f"{node.name}_as_sum"))
        quantise.input[1] = f"{quantise.name}_sum_step"
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def preprocessed_pixel_values(module) -> np.ndarray:
    """float32 (256,): what `module.preprocess` makes of each 8-bit pixel value (a grey ramp, unscaled)."""
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    return module.preprocess(np.repeat(ramp, 32, axis=0), False)[0, 0, 0]


def calibration_photos(data_dir: Path, folders) -> list[Path]:
    photos = []
    for folder in folders:
        found = sorted(p for p in (data_dir / folder).rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
        photos += found[::CALIBRATION_STRIDE]
    return photos


class PreprocessedPhotos(CalibrationDataReader):
    """Calibration inputs: each photo through `module.preprocess`, as the detector feeds photos."""

    def __init__(self, input_name: str, module, photos: list[Path]):
        self.input_name = input_name
        self.module = module
        self.pending = list(photos)

    def get_next(self):
        if not self.pending:
            return None
        rgb = cv2.cvtColor(cv2.imread(str(self.pending.pop(0)), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return {self.input_name: self.module.preprocess(rgb, True)}


class _OneInput(CalibrationDataReader):
    def __init__(self, feed):
        self.feed = feed

    def get_next(self):
        feed, self.feed = self.feed, None
        return feed


@contextlib.contextmanager
def histograms_one_input_at_a_time():
    """ONNX Runtime's histogram calibrator keeps every intermediate tensor of every
    input until it has read them all (gigabytes per photo here); it also merges
    histograms over calls. So hand it one input per call."""
    module = sys.modules["onnxruntime.quantization.quantize"]
    original = module.create_calibrator

    def create_streaming(*args, **kwargs):
        calibrator = original(*args, **kwargs)
        collect_all = calibrator.collect_data

        def collect_data(reader):
            for feed in iter(reader.get_next, None):
                collect_all(_OneInput(feed))

        calibrator.collect_data = collect_data
        return calibrator

    module.create_calibrator = create_streaming
    try:
        yield
    finally:
        module.create_calibrator = original


def derive(name: str, data_dir: Path) -> Path:
    source, module, folders = MODELS[name]
    target = WEIGHTS / source.replace(".onnx", "_int8.onnx")
    model = onnx.load(str(WEIGHTS / source))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        model = version_converter.convert_version(model, 13)
    with tempfile.TemporaryDirectory() as work:
        raised, prepared = os.path.join(work, "raised.onnx"), os.path.join(work, "prepared.onnx")
        onnx.save(model, raised)
        quant_pre_process(raised, prepared, skip_symbolic_shape=True)
        model = onnx.load(prepared)
        for index, node in enumerate(model.graph.node):
            node.name = node.name or f"{node.op_type}_{index}"
        onnx.save(model, prepared)
        photos = calibration_photos(data_dir, folders)
        with histograms_one_input_at_a_time():
            quantize_static(prepared, str(target), PreprocessedPhotos(model.graph.input[0].name, module, photos),
                            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.Percentile,
                            nodes_to_exclude=output_heads(model),
                            extra_options={"CalibPercentile": CALIBRATION_PERCENTILE})
    onnx.save(code_input(gates_as_sums(onnx.load(str(target))), preprocessed_pixel_values(module)), str(target))
    data = target.read_bytes()
    print(f"{target.name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}, "
          f"calibrated on {len(photos)} photos of {', '.join(folders)}")
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="evaluation data folder with faces/ and plates/")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, from {sorted(MODELS)} (default: all)")
    args = parser.parse_args(argv)
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {sorted(MODELS)}")
        derive(name, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
