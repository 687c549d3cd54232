"""Empirical bias correction of int8 .tflite models: the int32 biases move so that each layer's mean
output matches float, which shrinks the int8 model's mean output error; sizes and ops stay the same."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_depthwise_net


@pytest.fixture(scope="module")
def converted():
    """A small conv / depthwise / dense net (logits out) as float32 and plain int8 .tflite bytes, the
    calibration inputs, and int8 with the depthwise layer kept float (a guard's candidate)."""
    from edgekit.child_process import reusing_children
    from edgekit.runtime.tflite_file import parse_tflite
    from edgekit.targets.tflite_converter import PreparedModel

    model = small_depthwise_net("relu6")
    rng = np.random.default_rng(0)
    for layer in model.layers[1:]:  # trained-looking biases (all-zero ones would share one buffer)
        if getattr(layer, "bias", None) is not None:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(scale=0.1, size=bias.shape).astype(np.float32)])
    calibration = rng.normal(size=(48, 24, 24, 3)).astype(np.float32)
    with reusing_children(), PreparedModel(model, what="small net", representative=calibration[:16]) as prepared:
        float_bytes, int8_bytes = prepared.convert_many([("float32", "float32", ()), ("int8", "float32", ())])
        graph = parse_tflite(int8_bytes).main
        depthwise = next(graph.tensors[op.outputs[0]].name for op in graph.operators if op.op == "DEPTHWISE_CONV_2D")
        depthwise_float = prepared.convert("int8", denylisted_nodes=(depthwise,))
    return float_bytes, int8_bytes, calibration, depthwise_float


def _mean_output_error(candidate: bytes, reference: bytes, inputs: np.ndarray) -> float:
    from edgekit.targets.tflite_converter import run_tflite

    return float(np.mean(np.abs((run_tflite(candidate, inputs) - run_tflite(reference, inputs)).mean(0))))


def test_bias_correction_shrinks_the_int8_models_mean_output_error_and_changes_only_biases(converted):
    from edgekit.runtime.tflite_file import parse_tflite
    from edgekit.stages.bias_correction import correct_int8_biases

    float_bytes, int8_bytes, calibration, _ = converted
    corrected, report = correct_int8_biases(int8_bytes, float_bytes, calibration, samples=48)
    assert report["layers_corrected"] == 4  # conv, depthwise, 1x1 conv, dense
    assert report["mean_abs_channel_shift_after"] < report["mean_abs_channel_shift_before"]
    before = _mean_output_error(int8_bytes, float_bytes, calibration)
    after = _mean_output_error(corrected, float_bytes, calibration)
    assert after < 0.5 * before, (before, after)
    assert len(corrected) == len(int8_bytes) and corrected != int8_bytes
    plain, fixed = parse_tflite(int8_bytes), parse_tflite(corrected)
    assert [op.op for op in plain.subgraphs[0].operators] == [op.op for op in fixed.subgraphs[0].operators]


def test_bias_correction_corrects_the_int8_layers_of_a_model_with_a_layer_kept_float(converted):
    """What the accuracy guard does with --bias-correction to each candidate: the float layer is left alone
    (its output reaches the next int8 layer through a QUANTIZE), the int8 layers around it are corrected."""
    from edgekit.runtime.tflite_file import parse_tflite
    from edgekit.stages.bias_correction import correct_int8_biases

    float_bytes, _, calibration, candidate = converted
    fixed, report = correct_int8_biases(candidate, float_bytes, calibration, samples=48)
    assert report["layers_corrected"] == 3  # conv, 1x1 conv, dense: the depthwise layer is float
    assert report["mean_abs_channel_shift_after"] < 0.5 * report["mean_abs_channel_shift_before"]
    before = _mean_output_error(candidate, float_bytes, calibration)
    assert _mean_output_error(fixed, float_bytes, calibration) < 0.5 * before
    assert len(fixed) == len(candidate)
    ops = [op.op for op in parse_tflite(candidate).main.operators]
    assert "DEQUANTIZE" in ops and ops == [op.op for op in parse_tflite(fixed).main.operators]


@pytest.mark.parametrize("extra", [{"int8": False, "float16": True}, {"qat": True}, {"prune": 0.5}])
def test_bias_correction_is_refused_outside_plain_post_training_int8(extra):
    from edgekit.errors import UsageError
    from edgekit.options import CompressOptions

    with pytest.raises(UsageError, match="--bias-correction corrects a post-training --int8"):
        CompressOptions(**({"int8": True, "bias_correction": True} | extra))


def test_bias_correction_is_accepted_with_the_accuracy_guard():
    from edgekit.options import CompressOptions

    options = CompressOptions(int8=True, bias_correction=True, max_accuracy_drop=1.0)
    assert options.bias_correction and options.max_accuracy_drop == 1.0


@pytest.mark.slow
def test_compress_bias_correction_writes_a_corrected_int8_the_same_size_with_its_report(tiny_float_artifact, tmp_path):
    from edgekit.stages.compress import compress

    (plain,) = compress(model=tiny_float_artifact.path, out_dir=tmp_path / "plain", int8=True)
    (fixed,) = compress(model=tiny_float_artifact.path, out_dir=tmp_path / "fixed", int8=True, bias_correction=True)
    report = fixed.manifest.extra["bias_correction"]
    assert report["layers_corrected"] > 10  # MobileNetV2's convolutions, depthwise layers and the head
    assert report["mean_abs_channel_shift_after"] < report["mean_abs_channel_shift_before"]
    assert fixed.manifest.options["bias_correction"] is True
    assert fixed.path.stat().st_size == plain.path.stat().st_size
    assert fixed.path.read_bytes() != plain.path.read_bytes()
