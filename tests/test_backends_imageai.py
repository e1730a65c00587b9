"""The `imageai` backend: ImageAI 3.x loads a RetinaNet .pt made here from
torchvision's architecture with random weights (needs pii-blur[imageai]).

Random weights find nothing worth reporting; the tests check that the real
ImageAI loading and inference paths run, and how detections are mapped.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("imageai", reason="the imageai backend needs pip install 'pii-blur[imageai]' (torch, ~5 GB)")
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from pii_blur.models import DetectorConfig, create_detector  # noqa: E402
from pii_blur.models.imageai_backend import ImageAIDetector, model_type_of  # noqa: E402
from pii_blur.models.model_config import ModelSpec  # noqa: E402
from pii_blur.models.model_files import ModelFileError  # noqa: E402


@pytest.fixture(scope="module")
def retinanet_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path_factory.mktemp("imageai") / "retinanet_resnet50_fpn_coco.pth"
    torch.save(model.state_dict(), path)
    return str(path)


def imageai_detector(path, classes=("person", "car", "truck"), labels=(), **fields):
    spec = ModelSpec("imageai", path, labels=labels, classes=classes, **fields)
    return create_detector("imageai", DetectorConfig(min_probability=0.4, threads=2, models=(spec,)))


def test_retinanet_weights_load_through_imageai_and_run(retinanet_weights):
    detector = imageai_detector(retinanet_weights)
    assert isinstance(detector, ImageAIDetector) and detector.model_type == "retinanet"
    assert detector.threshold == 0.4 and detector.labels == ("person", "car", "truck")
    # ImageAI's own 0.5 score cut is lowered to the floor, so near misses can be reported.
    assert detector.detector._ObjectDetection__objectness_score == pytest.approx(0.2)
    rng = np.random.default_rng(1)
    found = detector.detect([rng.integers(0, 256, (160, 240, 3), dtype=np.uint8)])
    assert len(found) == 1
    assert all(d.label in detector.labels and d.score >= detector.floor for d in found[0])


def test_detections_are_renamed_filtered_and_clipped(retinanet_weights, monkeypatch):
    detector = imageai_detector(retinanet_weights, classes=("person", "vehicle"),
                                labels=(("car", "vehicle"), ("truck", "vehicle")))
    predictions = [{"name": "person", "percentage_probability": 91.5, "box_points": [10, 20, 60, 90]},
                   {"name": "truck", "percentage_probability": 45.0, "box_points": [-5, 0, 300, 80]},
                   {"name": "dog", "percentage_probability": 99.0, "box_points": [0, 0, 10, 10]}]
    monkeypatch.setattr(detector.detector, "detectObjectsFromImage", lambda **kwargs: (None, predictions))
    [found] = detector.detect([np.zeros((100, 200, 3), np.uint8)])
    assert [(d.label, d.score, d.box) for d in found] == [("person", 0.915, (10.0, 20.0, 60.0, 90.0)),
                                                          ("vehicle", 0.45, (0.0, 0.0, 200.0, 80.0))]


def test_wrong_weights_and_unknown_networks_are_clear_errors(tmp_path, retinanet_weights):
    wrong = tmp_path / "retinanet_small.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), wrong)
    with pytest.raises(ModelFileError, match="ImageAI cannot load .* as retinanet weights"):
        imageai_detector(str(wrong))
    with pytest.raises(ModelFileError, match="set model_type"):
        model_type_of(ModelSpec("imageai", "/models/detector.pt"))
    assert model_type_of(ModelSpec("imageai", "/m/tiny-yolov3.pt")) == "tiny-yolov3"
    assert model_type_of(ModelSpec("imageai", "/m/yolov3.pt")) == "yolov3"
    assert model_type_of(ModelSpec("imageai", "/m/anything.pt", model_type="retinanet")) == "retinanet"
