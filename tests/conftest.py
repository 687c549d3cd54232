"""The shared fixture layer: real (small) data and real (tiny) models, built once per session.

- ``digits_dir``: scikit-learn's bundled handwritten digits written as a PNG image folder
  (``train/<digit>/``, ``test/<digit>/``), 32 px: real images, no download.
- ``clothing_dir``: ../shared/datasets/clothing-small (real photos); skipped when absent.
- ``tiny_float_artifact``: a real finetune run (MobileNetV2 with its real ImageNet weights, 32 px) on
  the digits: the float parent every compress/export/profile test starts from. Real weights matter:
  a random-init backbone gives collapsed features (chance accuracy), which hides quantization bugs.
- ``foreign``: a small CNN trained on the digits, saved the ways users bring their own models
  (.keras, .h5, SavedModel, tf2onnx NHWC .onnx, a PyTorch-layout NCHW .onnx), without manifests.
- ``coral_model``: Coral's quantized MobileNetV1 .tflite from ../shared/models (skipped when absent).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("EDGEKIT_QUIET", "1")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared"))
CLOTHING = SHARED / "datasets" / "clothing-small"
CORAL = SHARED / "models" / "edgetpu-compiled" / "mobilenet_v1_0.25_128_quant.tflite"
SIZE = 32  # input size of the foreign test models
DIGITS = [str(i) for i in range(10)]


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    from edgekit.data import write_digits_dataset

    return write_digits_dataset(tmp_path_factory.mktemp("data") / "digits", size=32)


@pytest.fixture(scope="session")
def clothing_dir() -> Path:
    if not (CLOTHING / "train").is_dir():
        pytest.skip(f"real photo dataset not found at {CLOTHING} (set EDGEKIT_SHARED to the shared folder)")
    return CLOTHING


@pytest.fixture(scope="session")
def tiny_float_artifact(tmp_path_factory, digits_dir):
    """A finetuned tiny classifier artifact (model.keras + manifest.json) on the digits."""
    from edgekit.stages.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(backbone="mobilenet_v2", weights="imagenet", input_size=32, epochs=15,
                            augment_copies=0, early_stopping=0, seed=0)
    result = finetune(data=digits_dir / "train", out_dir=tmp_path_factory.mktemp("float") / "float", config=config)
    return result.artifact


def sha256_tree(folder: Path) -> dict[str, str]:
    """Hashes of every file below ``folder``: compare before/after to prove nothing was overwritten."""
    from edgekit.artifacts import sha256_file

    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def coral_model() -> Path:
    if not CORAL.is_file():
        pytest.skip(f"Coral test models not found at {CORAL.parent} (set EDGEKIT_SHARED to the shared folder)")
    return CORAL


def _nchw_onnx(nhwc_path: Path, out: Path) -> None:
    """The same graph as torch.onnx.export lays it out: a 1x3xHxW input, transposed to NHWC inside."""
    import onnx
    from onnx import helper

    model = onnx.load(str(nhwc_path))
    graph = model.graph
    old = graph.input[0]
    graph.input.remove(old)
    graph.input.insert(0, helper.make_tensor_value_info("pixel_values", onnx.TensorProto.FLOAT, [1, 3, SIZE, SIZE]))
    graph.node.insert(0, helper.make_node("Transpose", ["pixel_values"], [old.name], perm=[0, 2, 3, 1]))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


@pytest.fixture(scope="session")
def foreign(tmp_path_factory, digits_dir) -> dict[str, Path]:
    """A small CNN trained on the digits with [-1, 1] input, saved the ways users bring models (no manifests)."""
    from edgekit._tf import import_tf
    from edgekit.artifacts import Preprocessing
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder

    root = tmp_path_factory.mktemp("foreign")
    tf, keras = import_tf()
    keras.utils.set_random_seed(0)
    pre = Preprocessing.preset("tf", (SIZE, SIZE))
    pixels, labels = load_folder_arrays(scan_image_folder(digits_dir / "train"), pre)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.MaxPooling2D()(keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs))
    h = keras.layers.MaxPooling2D()(keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h))
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy")
    model.fit(normalize(pixels, pre), labels, epochs=15, batch_size=32, verbose=0)
    paths = {"keras": root / "cnn.keras", "h5": root / "cnn.h5", "savedmodel": root / "cnn_savedmodel",
             "onnx": root / "cnn_nhwc.onnx", "onnx_nchw": root / "cnn_nchw.onnx", "labels": root / "labels.txt"}
    model.save(str(paths["keras"]), save_format="keras")
    model.save(str(paths["h5"]), save_format="h5")
    model.save(str(paths["savedmodel"]), save_format="tf")
    import onnx
    import tf2onnx

    spec = (tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    onnx.save(proto, str(paths["onnx"]))
    _nchw_onnx(paths["onnx"], paths["onnx_nchw"])
    paths["labels"].write_text("\n".join(DIGITS) + "\n")
    return paths
