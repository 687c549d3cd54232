"""Bring your own model: real foreign models (tf_keras .keras/.h5/SavedModel, tf2onnx NHWC and a
PyTorch-layout NCHW ONNX, Coral's quantized .tflite) through `edgekit import` and every stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DIGITS, SIZE, sha256_tree

from edgekit.artifacts import sha256_path
from edgekit.cli import main
from edgekit.data import images_sha256, scan_image_folder



def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main([*args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("kind", ["keras", "h5", "savedmodel", "onnx", "onnx_nchw"])
def test_import_reads_the_input_spec_and_records_the_source(capsys, foreign, tmp_path, kind):
    source = foreign[kind]
    before = sha256_tree(source.parent)
    code, out, err = run_cli(capsys, "import", str(source), "--out", str(tmp_path / "art"), "--preprocess", "tf",
                             "--labels", str(foreign["labels"]), "--json")
    assert code == 0, err
    summary = json.loads(out)
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["input"]["shape"][1:] == [SIZE, SIZE, 3] and manifest["input"]["dtype"] == "float32"
    assert manifest["input"]["layout"] == ("NCHW" if kind == "onnx_nchw" else "NHWC")
    assert manifest["labels"] == DIGITS and manifest["preprocessing"]["mean"] == [127.5] * 3
    assert manifest["extra"]["source"] == {"path": str(source.resolve()), "sha256": sha256_path(source),
                                           "kind": "keras" if kind == "h5" else kind.split("_")[0]}
    assert Path(summary["model"]).parent == tmp_path / "art"
    assert sha256_path(Path(summary["model"])) == sha256_path(source)  # an exact copy
    assert sha256_tree(source.parent) == before  # nothing written beside the source


def test_import_defaults_labels_to_class_numbers_and_refuses_a_float_input_without_normalisation(
        capsys, foreign, digits_dir, tmp_path):
    code, _, err = run_cli(capsys, "import", str(foreign["onnx"]), "--out", str(tmp_path / "a"))
    assert code == 2 and "--preprocess torch|tf|0-1|raw" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "import", str(foreign["onnx"]), "--out", str(tmp_path / "a"),
                           "--mean", "127.5", "--std", "127.5", "--train-data", str(digits_dir / "train"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["labels"] == [f"class_{i}" for i in range(10)] and manifest["preprocessing"]["std"] == [127.5] * 3
    assert manifest["training"]["images_sha256"] == images_sha256({"train": scan_image_folder(digits_dir / "train")})
    code, _, err = run_cli(capsys, "import", str(foreign["onnx"]), "--out", str(tmp_path / "b"), "--preprocess", "tf",
                           "--labels", str(foreign["labels"].with_name("missing.txt")))
    assert code == 2 and "missing.txt" in err
    bad = tmp_path / "three.txt"
    bad.write_text("a\nb\nc\n")
    code, _, err = run_cli(capsys, "import", str(foreign["onnx"]), "--out", str(tmp_path / "b"), "--preprocess", "tf",
                           "--labels", str(bad))
    assert code == 2 and "outputs 10 classes but --labels gives 3" in err
    code, _, err = run_cli(capsys, "import", str(foreign["labels"]), "--out", str(tmp_path / "c"))
    assert code == 4 and ".txt" in err and "torch.onnx.export" in err
    code, _, err = run_cli(capsys, "import", str(foreign["savedmodel"]), "--out",
                           str(foreign["savedmodel"] / "inside"), "--preprocess", "tf")
    assert code == 2 and "inside the model" in err


def test_import_refuses_keras_lambda_layers_unless_trusted(capsys, tmp_path):
    from edgekit._tf import import_tf

    _, keras = import_tf()
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(lambda x: x * 2.0)(inputs)))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(str(path), save_format="keras")
    code, _, err = run_cli(capsys, "import", str(path), "--out", str(tmp_path / "out"), "--preprocess", "0-1")
    assert code == 4 and "--trust-model" in err and not (tmp_path / "out" / "manifest.json").exists()
    code, _, err = run_cli(capsys, "import", str(path), "--out", str(tmp_path / "out"), "--preprocess", "0-1",
                           "--trust-model")
    assert code == 0, err


def test_coral_quantized_tflite_predicts_with_only_labels(capsys, coral_model, tmp_path, clothing_dir):
    """uint8 input: raw pixels go straight in, as the quantization (scale 1/128, zero point 128) says."""
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    labels = tmp_path / "imagenet.txt"
    labels.write_text("\n".join(f"imagenet-{i}" for i in range(1001)))
    photos = sorted((clothing_dir / "test" / "shoes").glob("*.jpg"))[:3]
    code, out, err = run_cli(capsys, "predict", str(coral_model), str(photos[0].parent), "--labels", str(labels),
                             "--json", "-k", "1")
    assert code == 0, err
    results = {Path(r["path"]).name: r["top_k"][0] for r in json.loads(out)["results"]}
    interpreter = Interpreter(model_path=str(coral_model))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    for photo in photos:
        pixels = np.asarray(Image.open(photo).convert("RGB").resize((128, 128), Image.BILINEAR), np.uint8)
        interpreter.set_tensor(detail["index"], pixels[None])
        interpreter.invoke()
        scores = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
        assert results[photo.name]["label"] == f"imagenet-{int(np.argmax(scores))}"
        assert results[photo.name]["score"] == pytest.approx(scores.max() / 256)  # probabilities, no re-softmax


def test_float_model_without_metadata_predicts_with_only_a_preset(capsys, foreign, digits_dir):
    folder = digits_dir / "test" / "7"
    tops = {}
    for kind in ("onnx", "onnx_nchw"):
        code, out, err = run_cli(capsys, "predict", str(foreign[kind]), str(folder), "--preprocess", "tf",
                                 "--json", "-k", "1")
        assert code == 0, err
        tops[kind] = [r["top_k"][0] for r in json.loads(out)["results"]]
    assert [t["label"] for t in tops["onnx_nchw"]] == [t["label"] for t in tops["onnx"]]  # transposed correctly
    labels = [t["label"] for t in tops["onnx_nchw"]]
    assert labels.count("class_7") / len(labels) > 0.4  # the trained CNN: chance is 0.1
    code, _, err = run_cli(capsys, "predict", str(foreign["onnx_nchw"]), str(folder))
    assert code == 4 and "--preprocess" in err


def test_profile_a_foreign_onnx_with_accuracy_from_import_options(capsys, foreign, digits_dir):
    code, out, err = run_cli(capsys, "profile", str(foreign["onnx"]), "--runs", "3", "--warmup", "1",
                             "--data", str(digits_dir / "test"), "--labels", str(foreign["labels"]),
                             "--preprocess", "tf", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["devices"]["cpu"]["input_shape"] == [1, SIZE, SIZE, 3]
    assert result["accuracy"]["model"]["accuracy"] > 0.4 and result["accuracy"]["images"] > 100  # chance: 0.1


def test_compile_reports_on_a_foreign_coral_tflite(capsys, coral_model, tmp_path):
    code, out, err = run_cli(capsys, "compile", str(coral_model), "--out", str(tmp_path / "tpu"), "--json")
    report = json.loads((tmp_path / "tpu" / "edgetpu_report.json").read_text())
    assert code == 7 and "edgetpu-compiler" in err and "31/31 ops would map" in err
    assert report["fully_int8"] and not report["cpu_ops"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["keras", "savedmodel"])
def test_int8_and_float16_from_a_foreign_model_measure_loss_against_it(capsys, foreign, digits_dir, tmp_path, kind):
    out = tmp_path / "compressed"
    code, stdout, err = run_cli(capsys, "compress", str(foreign[kind]), "--int8", "--float16", "--out", str(out),
                                "--calibration", str(digits_dir / "train"), "--eval-data", str(digits_dir / "test"),
                                "--labels", str(foreign["labels"]), "--preprocess", "tf", "--json")
    assert code == 0, err
    int8 = json.loads((out / "int8" / "manifest.json").read_text())
    imported = json.loads((out / "imported" / "manifest.json").read_text())
    assert imported["extra"]["source"]["sha256"] == sha256_path(foreign[kind])
    assert int8["parent"]["sha256"] == imported["sha256"] and int8["labels"] == DIGITS
    accuracy = int8["metrics"]["accuracy"]
    assert accuracy["parent_top1"] > 0.4 and abs(accuracy["drop_points"]) < 5
    assert {row["variant"] for row in json.loads(stdout)} == {"int8", "float16"}
    # profile's accuracy loss finds the imported float parent through the manifest chain
    code, stdout, err = run_cli(capsys, "profile", str(out / "int8"), "--runs", "2", "--warmup", "0",
                                "--data", str(digits_dir / "test"), "--json")
    assert code == 0, err
    loss = json.loads(stdout)["accuracy"]
    assert Path(loss["parent_path"]) == out / "imported" / ("model.keras" if kind == "keras" else "saved_model")
    assert abs(loss["accuracy_drop"]) < 5


@pytest.mark.slow
def test_prune_from_a_foreign_keras_model_and_prune_or_adaround_refused_for_a_savedmodel(capsys, foreign, digits_dir, tmp_path):
    code, _, err = run_cli(capsys, "compress", str(foreign["savedmodel"]), "--prune", "0.5", "--out",
                           str(tmp_path / "sm"), "--train-data", str(digits_dir / "train"),
                           "--labels", str(foreign["labels"]), "--preprocess", "tf")
    assert code == 2 and "SavedModel" in err and ".keras" in err
    code, _, err = run_cli(capsys, "compress", str(foreign["savedmodel"]), "--int8", "--weight-rounding", "adaround",
                           "--out", str(tmp_path / "sm-int8"), "--calibration", str(digits_dir / "train"),
                           "--labels", str(foreign["labels"]), "--preprocess", "tf")
    assert code == 2 and "--weight-rounding adaround" in err and ".keras" in err
    assert not (tmp_path / "sm-int8" / "int8").exists()
    code, _, err = run_cli(capsys, "compress", str(foreign["h5"]), "--prune", "0.5", "--fine-tune-epochs", "1",
                           "--out", str(tmp_path / "pruned"), "--train-data", str(digits_dir / "train"),
                           "--labels", str(foreign["labels"]), "--preprocess", "tf")
    assert code == 0, err
    manifest = json.loads((tmp_path / "pruned" / "pruned50-float32" / "manifest.json").read_text())
    assert manifest["extra"]["pruning"]["target_sparsity"] == 0.5


@pytest.mark.slow
def test_onnx_export_from_a_savedmodel_and_int8_from_a_foreign_nchw_onnx(capsys, foreign, digits_dir, tmp_path):
    common = ("--labels", str(foreign["labels"]), "--preprocess", "tf", "--json")
    code, out, err = run_cli(capsys, "export", str(foreign["savedmodel"]), "--target", "onnx",
                             "--out", str(tmp_path / "fp32"), *common)
    assert code == 0, err
    assert json.loads(out)["validation"]["max_abs_diff"] < 1e-4
    code, out, err = run_cli(capsys, "export", str(foreign["onnx_nchw"]), "--target", "onnx", "--int8",
                             "--calibration", str(digits_dir / "train"), "--out", str(tmp_path / "int8"), *common)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["validation"]["top1_agreement"] >= 0.8 and summary["quantization"]["mode"] == "static-qdq"
    manifest = json.loads((tmp_path / "int8" / "manifest.json").read_text())
    assert manifest["input"]["layout"] == "NCHW" and manifest["input"]["shape"] == [1, 3, SIZE, SIZE]
