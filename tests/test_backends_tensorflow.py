"""The `tensorflow` backend on a tiny SavedModel with the Object Detection API
signature, built and saved here (needs pii-blur[tensorflow])."""

from __future__ import annotations

import hashlib
import importlib.util
import tarfile

import numpy as np
import pytest

from pii_blur.config import BlurConfig
from pii_blur.models import DetectorConfig, create_detector
from pii_blur.models.model_config import ModelSpec
from pii_blur.models.model_files import ModelFileError
from pii_blur.models.tensorflow_od import TFModelError, import_tensorflow

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("the tensorflow backend needs pip install 'pii-blur[tensorflow]'", allow_module_level=True)
tf = import_tensorflow()   # as the backend does it (see import_tensorflow: torch's triton must load first)

# (ymin, xmin, ymax, xmax) in 0..1, score, class id (COCO: 1 person, 3 car, 18 dog).
OUTPUTS = [((0.1, 0.2, 0.5, 0.6), 0.9, 1.0),     # person
           ((0.5, 0.0, 1.2, 0.5), 0.8, 3.0),     # car, past the bottom edge: clipped
           ((0.0, 0.0, 0.2, 0.2), 0.3, 1.0),     # person near miss (floor 0.2, threshold 0.4)
           ((0.6, 0.6, 0.9, 0.9), 0.95, 18.0),   # dog: not mapped
           ((0.3, 0.3, 0.4, 0.4), 0.1, 3.0)]     # under the floor
PADDING = 2                                      # OD API outputs are padded past num_detections


class FixedDetector(tf.Module):
    """Outputs OUTPUTS for any image; the image still flows into the result (times zero)."""

    def __init__(self, batch):
        super().__init__()
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([batch, None, None, 3], tf.uint8, name="input_tensor")])

    def _serve(self, input_tensor):
        n = tf.shape(input_tensor)[0]
        zero = tf.reduce_mean(tf.cast(input_tensor, tf.float32), axis=[1, 2, 3]) * 0.0   # [N]
        boxes = [box for box, _, _ in OUTPUTS] + [(0.0, 0.0, 1.0, 1.0)] * PADDING
        scores = [score for _, score, _ in OUTPUTS] + [0.99] * PADDING
        classes = [cls for _, _, cls in OUTPUTS] + [1.0] * PADDING

        def per_image(values):
            return tf.tile(tf.constant([values], tf.float32), [n] + [1] * np.ndim(values)) \
                + tf.reshape(zero, [-1] + [1] * np.ndim(values))
        return {"detection_boxes": per_image(boxes), "detection_scores": per_image(scores),
                "detection_classes": per_image(classes),
                "num_detections": tf.fill([n], float(len(OUTPUTS))) + zero}


def save_model(folder, batch=1, outputs=True):
    module = FixedDetector(batch)
    if outputs:
        signature = module.serve
    else:   # a classifier-like signature, without the OD API outputs
        signature = tf.function(lambda input_tensor: {"logits": tf.zeros([1, 3])},
                                input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)])
    tf.saved_model.save(module, str(folder), signatures={"serving_default": signature})
    return str(folder)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("tf") / "detector")


@pytest.fixture(autouse=True)
def model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PII_BLUR_CACHE", str(tmp_path / "model-cache"))


def tf_detector(path, labels=(("1", "person"), ("3", "car")), classes=("person", "car"), **fields):
    spec = ModelSpec("tensorflow", path, labels=labels, classes=classes, **fields)
    return create_detector("tensorflow", DetectorConfig(min_probability=0.4, threads=1, models=(spec,)))


def rounded(detections):
    return [(d.label, round(d.score, 4), tuple(round(v, 3) for v in d.box)) for d in detections]


def test_saved_model_detections_are_mapped_and_scaled_to_pixels(saved_model):
    detector = tf_detector(saved_model)
    assert detector.threshold == 0.4 and set(detector.labels) == {"person", "car"}
    image = np.full((100, 200, 3), 128, np.uint8)     # h = 100, w = 200
    [found] = detector.detect([image])
    assert rounded(found) == [("person", 0.9, (40.0, 10.0, 120.0, 50.0)),
                              ("car", 0.8, (0.0, 50.0, 100.0, 100.0)),
                              ("person", 0.3, (0.0, 0.0, 40.0, 20.0))]


def test_batch_one_signature_takes_images_of_any_size(saved_model):
    detector = tf_detector(saved_model, classes=("person",))
    found = detector.detect([np.zeros((100, 200, 3), np.uint8), np.zeros((50, 50, 3), np.uint8)])
    assert [rounded(f)[0][2] for f in found] == [(40.0, 10.0, 120.0, 50.0), (10.0, 5.0, 30.0, 25.0)]
    assert all(d.label == "person" for f in found for d in f)


def test_batched_signature_runs_same_size_images_together(tmp_path):
    detector = tf_detector(save_model(tmp_path / "batched", batch=None))
    assert detector.batch_size is None
    found = detector.detect([np.zeros((100, 200, 3), np.uint8)] * 3 + [np.zeros((10, 10, 3), np.uint8)])
    assert [len(f) for f in found] == [3, 3, 3, 3]
    assert rounded(found[3])[0] == ("person", 0.9, (2.0, 1.0, 6.0, 5.0))


def test_archived_saved_model_is_unpacked_from_the_cache(tmp_path, saved_model):
    archive = tmp_path / "detector.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(saved_model, arcname="exported/saved_model")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    detector = tf_detector(str(archive), sha256=digest)
    assert rounded(detector.detect([np.zeros((100, 200, 3), np.uint8)])[0])[0][0] == "person"
    assert (tmp_path / "model-cache" / digest / "unpacked" / "exported" / "saved_model" / "saved_model.pb").exists()
    with pytest.raises(ModelFileError, match="expects"):
        tf_detector(str(archive), sha256="0" * 64)


def test_seed_mode_config_selects_tensorflow_for_persons(saved_model):
    config = BlurConfig(classes=("person", "car", "truck"), threads=1,
                        models=(ModelSpec("tensorflow", saved_model, labels=(("1", "person"), ("3", "car"),
                                                                              ("8", "truck")),
                                          classes=("person", "car", "truck")),))
    assert config.backends() == ["tensorflow"]
    detector = create_detector("tensorflow", config.detector_config())
    assert [d.label for d in detector.detect([np.zeros((100, 200, 3), np.uint8)])[0]] == ["person", "car", "person"]


def test_unusable_models_are_clear_errors(tmp_path, saved_model):
    with pytest.raises(TFModelError, match="needs 'labels'"):
        tf_detector(saved_model, labels=())
    with pytest.raises(TFModelError, match="lacks the Object Detection API output"):
        tf_detector(save_model(tmp_path / "classifier", outputs=False))
    with pytest.raises(TFModelError, match="no signature 'detect'"):
        tf_detector(saved_model, signature="detect")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="no saved_model.pb"):
        tf_detector(str(tmp_path / "empty"))
