"""ONNX target: tf2onnx export, int8 QDQ quantization, embedded metadata, subprocess validation, bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import ModelFileError, OutputError, UnsafeModelError, UsageError, ValidationError
from conftest import sha256_tree


@pytest.fixture(scope="module")
def trained_artifact(digits_dir, tmp_path_factory):
    """A small CNN really trained on the digits (the random-init finetune fixture is near-constant,
    which would make int8 agreement trivial), saved as a Keras artifact with manifest."""
    from edgekit._tf import import_tf, set_seed
    from edgekit.artifacts import Manifest, Preprocessing, write_artifact
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder
    from edgekit.keras_io import save_keras_model

    _, tf_keras = import_tf()
    set_seed(0)
    preprocessing = Preprocessing(size=(32, 32), mean=(127.5,) * 3, std=(127.5,) * 3)
    folder = scan_image_folder(digits_dir / "train")
    pixels, labels = load_folder_arrays(folder, preprocessing)
    layers = tf_keras.layers
    inputs = tf_keras.Input((32, 32, 3), name="pixels")
    x = inputs
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(normalize(pixels, preprocessing), labels, epochs=8, batch_size=32, verbose=0)
    manifest = Manifest(format="keras", artifact="model.keras", stage="finetune", labels=folder.classes,
                        preprocessing=preprocessing.to_dict(), output={"activation": "softmax"},
                        extra={"data": str(digits_dir / "train")})
    return write_artifact(tmp_path_factory.mktemp("cnn") / "float", "model.keras", manifest,
                          writer=lambda tmp: save_keras_model(model, tmp))


@pytest.fixture(scope="module")
def fp32_export(trained_artifact, tmp_path_factory):
    from edgekit.targets.onnx import export_onnx

    return export_onnx(trained_artifact.directory, out_dir=tmp_path_factory.mktemp("onnx") / "fp32")


@pytest.fixture(scope="module")
def int8_export(trained_artifact, digits_dir, tmp_path_factory):
    from edgekit.targets.onnx import export_onnx

    return export_onnx(trained_artifact.directory, out_dir=tmp_path_factory.mktemp("onnx") / "int8", int8=True,
                       calibration=digits_dir / "train", calibration_samples=100)


@pytest.fixture(scope="module")
def held_out(trained_artifact, digits_dir):
    """All held-out digit images as normalized model inputs, with labels."""
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder

    preprocessing = trained_artifact.manifest.preprocessing_spec()
    pixels, labels = load_folder_arrays(scan_image_folder(digits_dir / "test"), preprocessing)
    return normalize(pixels, preprocessing), labels


def _onnx_outputs(path: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.stack([session.run(None, {name: x[None]})[0][0] for x in inputs])


def test_float_export_passes_full_check_and_matches_keras_within_1e_4(fp32_export, trained_artifact, held_out):
    import onnx

    from edgekit.keras_io import load_keras_model

    onnx.checker.check_model(str(fp32_export.path), full_check=True)
    inputs = held_out[0][:64]
    keras_out = np.asarray(load_keras_model(trained_artifact.path)(inputs, training=False))
    assert np.max(np.abs(_onnx_outputs(fp32_export.path, inputs) - keras_out)) <= 1e-4
    manifest = fp32_export.manifest
    assert manifest.format == "onnx" and manifest.extra["opset"] == 17
    assert manifest.parent["sha256"] == trained_artifact.manifest.sha256
    assert manifest.metrics["validation"]["max_abs_diff"] <= 1e-4
    assert manifest.input["shape"] == [1, 32, 32, 3]


def test_int8_export_is_qdq_with_softmax_left_in_float(int8_export):
    import onnx

    graph = onnx.load(str(int8_export.path)).graph
    produced_by = {out: node.op_type for node in graph.node for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convs) == 3
    assert all(produced_by.get(name) == "DequantizeLinear" for node in convs for name in node.input[:2])
    softmax = [node for node in graph.node if node.op_type == "Softmax"]
    assert len(softmax) == 1
    consumers = [node.op_type for node in graph.node if softmax[0].output[0] in node.input]
    assert "QuantizeLinear" not in consumers
    assert softmax[0].output[0] == graph.output[0].name
    assert int8_export.manifest.extra["quantization"]["float_nodes"] == [softmax[0].name]


def test_int8_conv_weights_use_the_7_bit_range(int8_export):
    """Full-range int8 weights saturate onnxruntime's int16 pair sums on AVX2-only x86 CPUs
    (agreement 0.23 on the MobileNetV2 CLI test); |w| <= 64 keeps 255 * 64 * 2 below 32767."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(int8_export.path)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    conv_weights = [weights[dq.input[0]] for conv in graph.node if conv.op_type == "Conv"
                    for dq in graph.node if dq.output[0] == conv.input[1]]
    assert len(conv_weights) == 3 and all(w.dtype == np.int8 for w in conv_weights)
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in conv_weights) <= 64


def test_int8_top1_agrees_with_float_on_held_out_digits(int8_export, fp32_export, held_out):
    inputs, labels = held_out
    float_out, int8_out = _onnx_outputs(fp32_export.path, inputs), _onnx_outputs(int8_export.path, inputs)
    agreement = float((float_out.argmax(1) == int8_out.argmax(1)).mean())
    assert agreement >= 0.9, agreement
    assert (float_out.argmax(1) == labels).mean() > 0.8  # the parent really discriminates
    assert (int8_out.argmax(1) == labels).mean() >= (float_out.argmax(1) == labels).mean() - 0.05
    assert len(np.unique(np.round(int8_out, 3))) > 20  # probabilities did not collapse to a few levels
    assert int8_export.manifest.size_bytes < 0.5 * fp32_export.manifest.size_bytes


def test_labels_and_preprocessing_round_trip_through_metadata_props(fp32_export, trained_artifact, digits_dir):
    from edgekit.runtime import Predictor
    from edgekit.runtime.metadata import read_onnx_metadata

    meta = read_onnx_metadata(fp32_export.path)
    assert meta["labels"] == trained_artifact.manifest.labels
    assert meta["preprocessing"] == trained_artifact.manifest.preprocessing
    bare = fp32_export.directory.parent / "bare"
    bare.mkdir()
    shutil.copy(fp32_export.path, bare / "model.onnx")  # no manifest: the runtime must use the embedded labels
    image = next((digits_dir / "test" / "3").iterdir())
    top = Predictor(bare / "model.onnx").predict(str(image), top_k=3)
    assert len(top) == 3 and top[0][0] == "3"


def test_validation_against_a_different_model_raises_with_the_numbers(fp32_export, held_out):
    from edgekit._tf import import_tf
    from edgekit.stages.finetune import build_classifier
    from edgekit.targets.common import compare_to_parent
    from edgekit.targets.onnx import run_onnx_subprocess

    _, tf_keras = import_tf()
    tf_keras.utils.set_random_seed(1)
    other = build_classifier(tf_keras.applications.MobileNetV2(alpha=0.35, weights=None, include_top=False,
                                                               pooling="avg", input_shape=(32, 32, 3)), 10, dropout=0.2)
    inputs = held_out[0][:16]
    candidate = run_onnx_subprocess(fp32_export.path, inputs)
    with pytest.raises(ValidationError, match=r"max \|diff\| [0-9.e-]+ > atol 0.0001.*top-1 agreement [0-9.]+"):
        compare_to_parent(np.asarray(other(inputs, training=False)), candidate, quantized=False,
                          what="model.onnx", sample_source="digits")


def test_float_onnx_parent_can_be_quantized_later(fp32_export, digits_dir, tmp_path):
    from edgekit.targets.onnx import export_onnx

    artifact = export_onnx(fp32_export.directory, out_dir=tmp_path / "q", int8=True, calibration=digits_dir / "train",
                           calibration_samples=50, calibrate_method="percentile")
    assert artifact.manifest.parent["format"] == "onnx"
    assert artifact.manifest.extra["quantization"]["calibrate_method"] == "percentile"
    assert artifact.manifest.metrics["validation"]["top1_agreement"] >= 0.8


def test_output_folder_equal_to_input_is_refused_and_parent_untouched(trained_artifact):
    from edgekit.targets.onnx import export_onnx

    before = sha256_tree(trained_artifact.directory)
    with pytest.raises(OutputError, match="different --out"):
        export_onnx(trained_artifact.directory, out_dir=trained_artifact.directory)
    assert sha256_tree(trained_artifact.directory) == before


@pytest.mark.parametrize("damage, error, message", [
    ("truncated", ModelFileError, "truncated|corrupt|not a TFLite or ONNX"),
    ("lfs", ModelFileError, "Git LFS pointer"),
    ("tflite", ModelFileError, "named .onnx but contains a tflite"),
])
def test_damaged_onnx_inputs_are_refused_before_parsing(fp32_export, tmp_path, damage, error, message):
    from edgekit.targets.onnx import export_onnx

    bad = tmp_path / "in" / "model.onnx"
    bad.parent.mkdir()
    data = fp32_export.path.read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 3],
                     "lfs": b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 1\n",
                     "tflite": b"\x1c\x00\x00\x00TFL3" + bytes(200)}[damage])
    with pytest.raises(error, match=message):
        export_onnx(bad, out_dir=tmp_path / "out", int8=True)
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.targets.onnx import export_onnx

    weight = numpy_helper.from_array(np.ones((3, 3), np.float32), name="w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight])
    model = helper.make_model(graph)
    onnx.external_data_helper.convert_model_to_external_data(model, location="../secret.bin", size_threshold=0)
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.ones(9, np.float32).tobytes())
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(UnsafeModelError, match="climbs out"):
        export_onnx(folder / "model.onnx", out_dir=tmp_path / "out")


def test_registry_validates_options_per_target():
    from edgekit.targets import get_target

    with pytest.raises(UsageError, match="does not apply to target 'tflite'"):
        get_target("tflite").validate_options({"opset": 13})
    with pytest.raises(UsageError, match="opset must be in 13..18"):
        get_target("onnx").validate_options({"opset": 30})
    with pytest.raises(UsageError, match="only applies with --int8"):
        get_target("onnx").validate_options({"calibrate_method": "entropy"})
    with pytest.raises(UsageError, match="two different quantization modes"):
        get_target("onnx").validate_options({"int8": True, "dynamic": True})
    assert get_target("ONNX").validate_options({"int8": True, "calibrate_method": "entropy"})


def test_unknown_target_suggests_the_closest_name():
    from edgekit.targets import get_target

    with pytest.raises(UsageError, match="did you mean 'onnx'"):
        get_target("onx")
