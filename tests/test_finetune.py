"""Finetune on real digit images: artifact contents, flat graph, reproducibility, resume, bad options."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.artifacts import load_artifact
from edgekit.errors import DataError, OutputError, UsageError
from edgekit.stages.finetune import FinetuneConfig, finetune

from conftest import sha256_tree

TINY = dict(backbone="mobilenet_v2", weights="imagenet", input_size=32, augment_copies=0, early_stopping=0)


def test_artifact_records_labels_preprocessing_seed_and_metrics(tiny_float_artifact):
    manifest = tiny_float_artifact.manifest
    assert manifest.format == "keras" and manifest.stage == "finetune"
    assert manifest.labels == [str(d) for d in range(10)]
    assert manifest.preprocessing["size"] == [32, 32] and len(manifest.preprocessing["mean"]) == 3
    assert manifest.input["shape"] == [1, 32, 32, 3] and manifest.seed == 0
    assert manifest.metrics["validation"]["accuracy"] > 0.7  # ImageNet features separate digits well
    folder = tiny_float_artifact.directory
    assert (folder / "labels.txt").read_text().split() == manifest.labels
    assert (folder / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((folder / "metrics.json").read_text())["validation"]["confusion_matrix"]


def test_manifest_records_the_image_bytes_and_the_machine(tiny_float_artifact, digits_dir):
    """What a re-run must match before its metrics can be compared: the images, byte for byte, and the CPU."""
    from edgekit.artifacts import load_artifact
    from edgekit.data import images_sha256, load_splits
    from edgekit.machine import machine_record

    manifest = load_artifact(tiny_float_artifact.path).manifest
    splits = load_splits(digits_dir / "train", validation_fraction=manifest.options["validation_fraction"], seed=0)
    assert manifest.training.images_sha256 == images_sha256({"train": splits.train, "val": splits.val})
    assert manifest.machine == machine_record()


def test_classifier_is_flat_so_tfmot_sees_every_layer(tiny_float_artifact):
    from edgekit._tf import import_tf
    from edgekit.keras_io import load_keras_model

    _, tf_keras = import_tf()
    model = load_keras_model(tiny_float_artifact.path)
    assert not any(isinstance(layer, tf_keras.Model) for layer in model.layers)
    assert model.layers[-1].name == "edgekit_head_dense"


def test_batch_one_inference_signature_has_static_shape(tiny_float_artifact):
    from edgekit._tf import import_tf
    from edgekit.keras_io import load_keras_model

    tf, _ = import_tf()
    model = load_keras_model(tiny_float_artifact.path)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, 32, 32, 3], tf.float32))
    assert concrete.structured_outputs.shape.as_list() == [1, 10]


def test_same_seed_gives_identical_metrics(digits_dir, tmp_path):
    config = FinetuneConfig(**TINY, epochs=3, seed=5)
    first = finetune(data=digits_dir / "train", out_dir=tmp_path / "a", config=config)
    second = finetune(data=digits_dir / "train", out_dir=tmp_path / "b", config=config)
    assert first.metrics["accuracy"] == second.metrics["accuracy"]
    assert first.metrics["confusion_matrix"] == second.metrics["confusion_matrix"]


def test_cached_features_are_reused_on_rerun(digits_dir, tmp_path):
    config = FinetuneConfig(**TINY, epochs=2)
    finetune(data=digits_dir / "train", out_dir=tmp_path / "run", config=config)
    cached = sorted((tmp_path / "run" / "cache").glob("features-*.npy"))
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = finetune(data=digits_dir / "train", out_dir=tmp_path / "run", config=config)
    assert cached and [p.stat().st_mtime_ns for p in cached] == stamps
    assert again.timings["features_s"] < 1.0


@pytest.mark.parametrize(("override", "message"), [
    ({"epochs": 0}, "--epochs"), ({"dropout": 1.0}, "--dropout"), ({"input_size": 8}, "--input-size"),
    ({"fine_tune_layers": 3}, "go together"), ({"backbone": "mobilenet_v9"}, "did you mean"),
])
def test_bad_options_fail_before_any_work(digits_dir, tmp_path, override, message):
    with pytest.raises(UsageError, match=message):
        finetune(data=digits_dir / "train", out_dir=tmp_path / "out", config=FinetuneConfig(**(TINY | override)))
    assert not (tmp_path / "out").exists()


def test_output_folder_equal_to_data_is_refused(digits_dir):
    before = sha256_tree(digits_dir / "train" / "0")
    with pytest.raises(OutputError, match="is the input"):
        finetune(data=digits_dir / "train", out_dir=digits_dir / "train", config=FinetuneConfig(**TINY))
    assert sha256_tree(digits_dir / "train" / "0") == before


def test_single_class_folder_is_refused(tmp_path, digits_dir):
    single = tmp_path / "one"
    (single / "7").mkdir(parents=True)
    for path in list((digits_dir / "train" / "7").iterdir())[:10]:
        (single / "7" / path.name).write_bytes(path.read_bytes())
    with pytest.raises(DataError, match="only one class"):
        finetune(data=single, out_dir=tmp_path / "out", config=FinetuneConfig(**TINY))


def _finetune_cli(digits_dir: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgekit", "finetune", str(digits_dir / "train"), "--out", str(out),
            "--backbone", "mobilenet_v2", "--weights", "imagenet", "--input-size", "32", "--epochs", "2", "--augment-copies", "0",
            "--fine-tune-layers", "10", "--fine-tune-epochs", "4", "--fine-tune-lr", "1e-4", *extra]


def test_sigint_during_fine_tuning_leaves_no_model_and_resume_continues(digits_dir, tmp_path):
    out = tmp_path / "run"
    env = os.environ | {"EDGEKIT_QUIET": "1"}
    process = subprocess.Popen(_finetune_cli(digits_dir, out), env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "checkpoints").glob("*.json")):
        time.sleep(0.2)
    assert list((out / "checkpoints").glob("*.json")), "no checkpoint was written"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not (out / "model.keras").exists() and not (out / "manifest.json").exists()
    assert not list(out.rglob(".edgekit-tmp-*"))
    state = json.loads(next((out / "checkpoints").glob("*.json")).read_text())
    assert 1 <= state["epoch"] < 4

    resumed = subprocess.run(_finetune_cli(digits_dir, out, "--resume", "--json"), env=env | {"EDGEKIT_QUIET": ""},
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming fine-tuning after epoch {state['epoch']}" in resumed.stderr
    artifact = load_artifact(out)
    history = artifact.manifest.extra["history"]["fine_tune"]
    assert len(history["loss"]) == 4 and history["loss"][:state["epoch"]] == state["history"]["loss"]


def test_cli_json_reports_accuracy(digits_dir, tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgekit", "finetune", str(digits_dir / "train"), "--out",
                             str(tmp_path / "o"), "--backbone", "mobilenet_v2", "--input-size", "32", "--epochs", "2",
                             "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    # Measured 0.788 on the 269 validation digits with these options (seed 0); chance is 0.1.
    assert summary["validation_accuracy"] >= 0.65 and Path(summary["model"]).is_file()
    manifest = json.loads((Path(summary["model"]).parent / "manifest.json").read_text())
    assert manifest["metrics"]["validation"]["accuracy"] == summary["validation_accuracy"]
    assert np.isfinite(summary["timings_s"]["total_s"])


def test_saving_the_same_model_twice_gives_the_same_bytes(tiny_float_artifact, tmp_path):
    """Keras stamps the save time into a .keras archive; edgekit drops it so that one model has one sha256."""
    import zipfile

    from edgekit.keras_io import ZIP_EPOCH, load_keras_model, save_keras_model

    model = load_keras_model(tiny_float_artifact.path)
    first, second = tmp_path / "a.keras", tmp_path / "b.keras"
    save_keras_model(model, first)
    time.sleep(2.1)  # a zip time has 2-second steps, metadata.json's date_saved 1-second ones
    save_keras_model(model, second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert {info.date_time for info in archive.infolist()} == {ZIP_EPOCH}
        metadata = json.loads(archive.read("metadata.json"))
    assert "date_saved" not in metadata and metadata["keras_version"]
    reloaded = load_keras_model(first)  # still a valid archive for Keras' safe loader
    for a, b in zip(model.get_weights(), reloaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
