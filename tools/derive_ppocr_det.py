"""Derive the vendored PP-OCRv4 text detector from rapidocr's file.

    python tools/derive_ppocr_det.py RAPIDOCR_DET_ONNX pii_blur/models/weights/ppocrv4_det_folded.onnx

The exported network spends a third of its time in element-wise passes over
large feature maps that ONNX Runtime does not fuse:
- a learnable affine (x * s + t, scalar s and t) right after 28 convolutions:
  folded into the convolution's weights and bias;
- 24 hard-swishes spelled x * clip(x + 3, 0, 6) / 6: rewritten as
  x * HardSigmoid(x) (alpha 1/6, beta 1/2), one pass instead of four;
- an affine after an activation that feeds only an unpadded convolution:
  folded into that convolution (its weights times s, its bias plus t times
  the sum of its weights), which is exact because no padding zero meets the
  shifted values.
Same function (the script checks the outputs on a random input before
writing), 30% less time. Record the output's sha256 in
pii_blur/models/weights.py and weights/NOTICE.
"""

from __future__ import annotations

import collections
import hashlib
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

TOLERANCE = 1e-4   # of text probabilities in [0, 1]


class _Graph:
    """The model's nodes with their constants, producers and consumers."""

    def __init__(self, model: onnx.ModelProto):
        self.graph = model.graph
        self.constant_nodes = {n.output[0]: n for n in self.graph.node if n.op_type == "Constant"}
        self.values = {name: numpy_helper.to_array(n.attribute[0].t) for name, n in self.constant_nodes.items()}
        self.consumers = collections.defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.outputs = {value.name for value in self.graph.output}
        self.removed: set[int] = set()
        self.renamed: dict[str, str] = {}
        self.added: list[onnx.NodeProto] = []
        self.replaced: dict[int, list[onnx.NodeProto]] = {}

    def nodes(self, op_type: str) -> list[onnx.NodeProto]:
        return [n for n in self.graph.node if n.op_type == op_type and id(n) not in self.removed]

    def scalar(self, name: str):
        value = self.values.get(name)
        return None if value is None or value.size != 1 else float(value.reshape(()))

    def own_constant(self, name: str) -> bool:
        return name in self.values and len(self.consumers[name]) == 1

    def only_consumer(self, name: str, op_type: str):
        """The one node that reads `name`, if it is an `op_type` and `name` is no graph output; else None."""
        users = self.consumers[name]
        one = len(users) == 1 and name not in self.outputs and users[0].op_type == op_type
        return users[0] if one else None

    def set_constant(self, name: str, array: np.ndarray) -> None:
        self.values[name] = array
        tensor = numpy_helper.from_array(array, name)
        if name in self.constant_nodes:
            self.constant_nodes[name].attribute[0].t.CopyFrom(tensor)
        else:
            self.added.append(helper.make_node("Constant", [], [name], value=tensor))

    def affine_after(self, name: str):
        """(mul, add, scale, shift) when `name` feeds only x * scale (+ shift), else None."""
        mul = self.only_consumer(name, "Mul")
        if mul is None:
            return None
        scale = self.scalar(_other(mul, name))
        if scale is None:
            return None
        add = self.only_consumer(mul.output[0], "Add")
        shift = self.scalar(_other(add, mul.output[0])) if add is not None else None
        return (mul, add, scale, shift) if shift is not None else (mul, None, scale, 0.0)

    def conv_weight_and_bias(self, conv: onnx.NodeProto):
        """The conv's own (unshared) weight and bias arrays, or None."""
        if not self.own_constant(conv.input[1]):
            return None
        if len(conv.input) > 2 and not self.own_constant(conv.input[2]):
            return None
        weight = self.values[conv.input[1]]
        bias = self.values[conv.input[2]] if len(conv.input) > 2 else np.zeros(weight.shape[0], weight.dtype)
        return weight, bias

    def set_conv(self, conv: onnx.NodeProto, weight: np.ndarray, bias: np.ndarray) -> None:
        self.set_constant(conv.input[1], weight.astype(np.float32))
        if len(conv.input) < 3:
            conv.input.append(conv.output[0] + "_folded_bias")
        self.set_constant(conv.input[2], bias.astype(np.float32))

    def finish(self) -> None:
        nodes = list(self.added)
        for node in self.graph.node:
            if id(node) in self.replaced:
                nodes.extend(self.replaced[id(node)])
            elif id(node) not in self.removed:
                nodes.append(node)
        for node in nodes:
            for k, name in enumerate(node.input):
                while name in self.renamed:
                    name = self.renamed[name]
                node.input[k] = name
        used = {name for node in nodes for name in node.input}
        del self.graph.node[:]
        self.graph.node.extend(n for n in nodes if n.op_type != "Constant" or n.output[0] in used)


def _other(node: onnx.NodeProto, name: str) -> str:
    return node.input[1] if node.input[0] == name else node.input[0]


def _scalar_operand(g: _Graph, node: onnx.NodeProto):
    """(x, c) when `node` is a binary op of a tensor x and a scalar constant c, else None."""
    x = next((name for name in node.input if g.scalar(name) is None), None)
    if x is None:
        return None
    value = g.scalar(_other(node, x))
    return None if value is None else (x, value)


def _fold_affines_into_their_conv(g: _Graph) -> int:
    folded = 0
    for conv in g.nodes("Conv"):
        affine, params = g.affine_after(conv.output[0]), g.conv_weight_and_bias(conv)
        if affine is None or params is None:
            continue
        mul, add, scale, shift = affine
        weight, bias = params
        g.set_conv(conv, weight * scale, bias * scale + shift)
        g.removed.update(id(n) for n in (mul, add) if n is not None)
        g.renamed[(add or mul).output[0]] = conv.output[0]
        folded += 1
    return folded


def _rewrite_hard_swishes(g: _Graph) -> int:
    rewritten = 0
    for add in g.nodes("Add"):
        operand = _scalar_operand(g, add)
        if operand is None or operand[1] != 3.0:
            continue
        x = operand[0]
        clip = g.only_consumer(add.output[0], "Clip")
        if clip is None or len(clip.input) != 3 \
                or g.scalar(clip.input[1]) != 0.0 or g.scalar(clip.input[2]) != 6.0:
            continue
        mul = g.only_consumer(clip.output[0], "Mul")
        if mul is None or _other(mul, clip.output[0]) != x:
            continue
        div = g.only_consumer(mul.output[0], "Div")
        if div is None or div.input[0] != mul.output[0] or g.scalar(div.input[1]) != 6.0:
            continue
        gate = helper.make_node("HardSigmoid", [x], [add.output[0] + "_gate"], alpha=1.0 / 6.0, beta=0.5)
        g.replaced[id(add)] = [gate, helper.make_node("Mul", [x, gate.output[0]], [div.output[0]])]
        g.removed.update(id(n) for n in (clip, mul, div))
        rewritten += 1
    return rewritten


def _fold_affines_into_the_next_conv(g: _Graph) -> int:
    folded = 0
    for mul in g.nodes("Mul"):
        operand = _scalar_operand(g, mul)
        if operand is None:
            continue
        x, scale = operand
        add = g.only_consumer(mul.output[0], "Add")
        shift = None if add is None else g.scalar(_other(add, mul.output[0]))
        if shift is None:
            continue
        conv = g.only_consumer(add.output[0], "Conv")
        if conv is None or conv.input[0] != add.output[0]:
            continue
        attributes = {a.name: a for a in conv.attribute}
        padded = "pads" in attributes and any(attributes["pads"].ints)
        if padded or ("auto_pad" in attributes and attributes["auto_pad"].s not in (b"NOTSET", b"VALID")):
            continue
        params = g.conv_weight_and_bias(conv)
        if params is None:
            continue
        weight, bias = params
        g.set_conv(conv, weight * scale, bias + shift * weight.sum(axis=(1, 2, 3), dtype=np.float64))
        g.removed.update((id(mul), id(add)))
        g.renamed[add.output[0]] = x
        folded += 1
    return folded


def derive(original: bytes) -> tuple[bytes, dict]:
    model = onnx.load_from_string(original)
    g = _Graph(model)
    counts = {"affines into their conv": _fold_affines_into_their_conv(g),
              "hard-swishes": _rewrite_hard_swishes(g)}
    counts["affines into the next conv"] = _fold_affines_into_the_next_conv(g)
    g.finish()
    onnx.checker.check_model(model)
    return model.SerializeToString(), counts


def max_difference(original: bytes, derived: bytes) -> float:
    import onnxruntime

    sample = np.random.default_rng(0).uniform(-1, 1, (1, 3, 320, 480)).astype(np.float32)
    before = onnxruntime.InferenceSession(original).run(None, {"x": sample})[0]
    after = onnxruntime.InferenceSession(derived).run(None, {"x": sample})[0]
    return float(np.abs(before - after).max())


def main() -> int:
    source, target = sys.argv[1:3]
    with open(source, "rb") as handle:
        original = handle.read()
    derived, counts = derive(original)
    difference = max_difference(original, derived)
    if difference > TOLERANCE:
        raise SystemExit(f"derived model differs from the original by {difference}")
    with open(target, "wb") as handle:
        handle.write(derived)
    print(f"{target}: {counts}, max difference {difference:.2g}, {len(derived)} bytes, "
          f"sha256 {hashlib.sha256(derived).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
