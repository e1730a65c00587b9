"""Seconds to load each detector backend, and to run one batch of six 1440x1440 views, on CPU.

    python benchmarks/backend_load.py [--backends onnx-centerface,onnx-yolo,...] [--threads 2] [--batch 6]

Each backend's model is built in one Python process and loaded in a fresh
one, so "load" includes importing pii-blur and the backend's library
(TensorFlow, torch) and building the model; "batch" is one detect()
call on `--batch` random 1440x1440 RGB views (the size sphere.py uses),
after one warm-up call on a single view ("first").

No weights are downloaded: the built-ins use their vendored weights; the
others use models built here, so only some numbers are the real cost:
  imageai:    torchvision RetinaNet-ResNet50-FPN with random weights, the real
              network and cost (ImageAI resizes each view to 800x800);
  onnx-yolo:  a constant-output graph in YOLOv8 layout (8400 anchors, 80
              classes): letterbox, decoding and NMS only, without the network;
  tensorflow: a SavedModel with the OD API signature and constant outputs:
              TF call and post-processing overhead only, without the network.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ALL = ("onnx-centerface", "onnx-ppocr-plate", "onnx-yolo", "tensorflow", "imageai")
VIEW = 1440


def build_model(backend: str, folder: str):
    """(ModelSpec or None) for `backend`, its model built in `folder`."""
    from pii_blur.models.model_config import ModelSpec

    if backend == "onnx-yolo":
        path = os.path.join(folder, "yolo-constant.onnx")
        _yolo_constant_onnx(path)
        return ModelSpec("onnx-yolo", path, classes=("person", "car", "truck"))
    if backend == "tensorflow":
        path = os.path.join(folder, "od-constant")
        _tf_constant_saved_model(path)
        return ModelSpec("tensorflow", path, labels=(("1", "person"), ("3", "car"), ("8", "truck")),
                         classes=("person", "car", "truck"))
    if backend == "imageai":
        import torch
        import torchvision
        path = os.path.join(folder, "retinanet_resnet50_fpn.pth")
        model = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None,
                                                                     num_classes=91)
        torch.save(model.state_dict(), path)
        return ModelSpec("imageai", path, classes=("person", "car", "truck"))
    return None


def _yolo_constant_onnx(path: str) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    rows = np.zeros((84, 8400), np.float32)
    rows[0:2] = rng.uniform(0, 640, (2, 8400))
    rows[2:4] = rng.uniform(8, 200, (2, 8400))
    rows[4:] = rng.uniform(0, 0.3, (80, 8400))      # a few hundred candidates above the floor, as in a street
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
         helper.make_node("Reshape", ["mean", "n11"], ["mean3"]),
         helper.make_node("Mul", ["mean3", "zero"], ["nothing"]),
         helper.make_node("Add", ["nothing", "rows"], ["output0"])],
        "yolo_constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 84, 8400])],
        [numpy_helper.from_array(np.zeros((), np.float32), "zero"), numpy_helper.from_array(rows[None], "rows"),
         numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "n11")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    names = {0: "person", 2: "car", 7: "truck", **{i: f"class{i}" for i in range(80) if i not in (0, 2, 7)}}
    helper.set_model_props(model, {"names": repr(dict(sorted(names.items()))), "imgsz": "[640, 640]"})
    onnx.save(model, path)


def _tf_constant_saved_model(path: str) -> None:
    import tensorflow as tf

    class Constant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)])
        def serve(self, input_tensor):
            zero = tf.reduce_mean(tf.cast(input_tensor, tf.float32)) * 0.0
            boxes = tf.random.stateless_uniform([1, 100, 4], seed=[1, 2]) * 0.5 + zero
            return {"detection_boxes": tf.concat([boxes[..., :2], boxes[..., :2] + 0.3], -1),
                    "detection_scores": tf.random.stateless_uniform([1, 100], seed=[3, 4]) + zero,
                    "detection_classes": tf.fill([1, 100], 1.0) + zero,
                    "num_detections": tf.fill([1], 100.0) + zero}

    module = Constant()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def build(backend: str, folder: str) -> None:
    """Child process: build the model and write its spec to folder/spec.json."""
    import dataclasses
    spec = build_model(backend, folder)
    with open(os.path.join(folder, "spec.json"), "w") as out:
        json.dump(dataclasses.asdict(spec) if spec else None, out)


def measure(backend: str, folder: str, threads: int, batch: int) -> dict:
    """Child process: load (imports included), warm up on one view, time one batch."""
    views = list(np.random.default_rng(0).integers(0, 256, (batch, VIEW, VIEW, 3), dtype=np.uint8))
    with open(os.path.join(folder, "spec.json")) as source:
        fields = json.load(source)
    started = time.perf_counter()
    from pii_blur.models import DetectorConfig, create_detector
    from pii_blur.models.model_config import ModelSpec
    spec = ModelSpec(**{**fields, "labels": tuple(map(tuple, fields["labels"])),
                        "classes": tuple(fields["classes"])}) if fields else None
    config = DetectorConfig(min_probability=0.4, threads=threads, models=(spec,) if spec else ())
    detector = create_detector(backend, config)
    load = time.perf_counter() - started
    started = time.perf_counter()
    detector.detect(views[:1])
    first = time.perf_counter() - started
    started = time.perf_counter()
    found = detector.detect(views)
    seconds = time.perf_counter() - started
    return {"backend": backend, "load_s": round(load, 2), "first_view_s": round(first, 2),
            "batch_s": round(seconds, 2), "views_per_s": round(batch / seconds, 2),
            "detections": sum(len(f) for f in found)}


def run_child(*args: str) -> str:
    child = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if child.returncode:
        raise RuntimeError(child.stderr.strip().splitlines()[-1] if child.stderr.strip() else "failed")
    return child.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(ALL), help=f"comma-separated (default: {','.join(ALL)})")
    parser.add_argument("--threads", type=int, default=2, help="threads per model (default: 2)")
    parser.add_argument("--batch", type=int, default=6, help="views per batch (default: 6)")
    parser.add_argument("--build", nargs=2, help=argparse.SUPPRESS)     # child: BACKEND FOLDER
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)   # child: BACKEND FOLDER
    args = parser.parse_args()
    if args.build:
        build(*args.build)
        return
    if args.measure:
        print(json.dumps(measure(*args.measure, args.threads, args.batch)))
        return
    print(f"{'backend':18} {'load s':>7} {'1st view s':>10} {'batch s':>8} {'views/s':>8}")
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix="pii-blur-bench-") as folder:
            os.environ["PII_BLUR_CACHE"] = os.path.join(folder, "cache")
            try:
                run_child("--build", backend, folder)
                output = run_child("--measure", backend, folder, "--threads", str(args.threads),
                                   "--batch", str(args.batch))
            except RuntimeError as error:
                print(f"{backend:18} failed: {error}")
                continue
        result = json.loads(output.strip().splitlines()[-1])
        print(f"{backend:18} {result['load_s']:7.2f} {result['first_view_s']:10.2f} {result['batch_s']:8.2f} "
              f"{result['views_per_s']:8.2f}")


if __name__ == "__main__":
    main()
