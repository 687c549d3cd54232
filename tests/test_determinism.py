"""Same inputs, same seed, same bytes: finetune, TFLite int8 and ONNX int8 repeated in fresh CPU processes.

Each run is a separate ``python -m edgekit`` process (no state shared through the interpreter), so these
also catch seeds that are set too late or depend on import order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_bad_inputs import run_edgekit

from edgekit.artifacts import load_artifact

pytestmark = pytest.mark.slow  # trains and converts everything twice (~2.5 min): runs in CI after the fast suite


def _weights(model_path: Path) -> list[np.ndarray]:
    from edgekit.keras_io import load_keras_model

    return [np.asarray(w) for w in load_keras_model(model_path).get_weights()]


def test_same_seed_finetune_twice_gives_identical_metrics_and_weights(digits_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        done = run_edgekit("finetune", digits_dir / "train", "--out", out, "--backbone", "mobilenet_v2", "--weights", "imagenet",
                           "--input-size", "32", "--epochs", "4", "--augment-copies", "1", "--fine-tune-layers", "6",
                           "--fine-tune-epochs", "1", "--seed", "7", "--json", timeout=400)
        assert done.returncode == 0, done.stderr
        runs.append(out)
    first, second = (load_artifact(out) for out in runs)
    assert first.manifest.metrics == second.manifest.metrics
    assert first.manifest.extra["history"] == second.manifest.extra["history"]
    metrics = [json.loads((out / "metrics.json").read_text()) for out in runs]
    for report in metrics:
        report.pop("timings_s")  # wall-clock durations, the only field allowed to differ
    assert metrics[0] == metrics[1]
    # the saved files themselves: no save time in the archive, so one model has one sha256
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.manifest.sha256 == second.manifest.sha256
    weights_a, weights_b = _weights(first.path), _weights(second.path)
    assert len(weights_a) == len(weights_b) > 0
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def compressed_twice(tiny_float_artifact, digits_dir, tmp_path_factory) -> list[Path]:
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(f"int8-{name}")
        done = run_edgekit("compress", tiny_float_artifact.directory, "--int8", "--calibration", digits_dir / "train",
                           "--out", out, timeout=400)
        assert done.returncode == 0, done.stderr
        outs.append(out)
    return outs


def test_same_int8_tflite_conversion_twice_gives_identical_bytes(compressed_twice):
    a, b = (load_artifact(out / "int8") for out in compressed_twice)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.manifest.sha256 == b.manifest.sha256
    assert a.manifest.metrics == b.manifest.metrics


def _onnx_outputs(path: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: inputs[i:i + 1]})[0] for i in range(len(inputs))])


def test_same_onnx_int8_export_twice_agrees_within_the_measured_tolerance(tiny_float_artifact, digits_dir, tmp_path):
    """Not bit-identical: tf2onnx's graph optimizer is order-dependent between processes (the same with
    PYTHONHASHSEED=0). Measured on this artifact: generated names differ in every run (~110 bytes of 2.6 MB);
    in some runs the graph itself differs (one run kept an extra Reshape + BatchNormalization and 2 more
    Q/DQ pairs), giving max |diff| 0.050 and 95.3% top-1 agreement between the two int8 models on 64 inputs;
    in other runs the outputs were bit-identical. Tolerance: top-1 agreement >= 0.9, max |diff| <= 0.1,
    identical quantization settings."""
    paths = []
    for name in ("a", "b"):
        done = run_edgekit("export", tiny_float_artifact.directory, "--target", "onnx", "--int8", "--calibration",
                           digits_dir / "train", "--seed", "3", "--out", tmp_path / name, timeout=400)
        assert done.returncode == 0, done.stderr
        paths.append(tmp_path / name / "model.onnx")
    a, b = (load_artifact(path) for path in paths)
    assert a.manifest.quantization == b.manifest.quantization
    inputs = np.random.default_rng(0).normal(size=(64, *a.manifest.preprocessing["size"], 3)).astype(np.float32)
    out_a, out_b = _onnx_outputs(a.path, inputs), _onnx_outputs(b.path, inputs)
    assert np.abs(out_a - out_b).max() <= 0.1
    assert np.mean(out_a.argmax(1) == out_b.argmax(1)) >= 0.9
