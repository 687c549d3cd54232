"""Activation ranges by percentile or MSE-optimal clip instead of the calibration min/max: one outlier
calibration image must no longer stretch a tensor's int8 grid, while the model inputs and softmax logits keep
their calibrated ranges. What that buys in accuracy is measured on real photos by
benchmarks/int8_loss_sources.py (a random small net's outputs are too insensitive to show it)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_depthwise_net


def _int8_by_estimator(model, calibration: np.ndarray) -> tuple[dict[str, bytes], dict[str, dict | None]]:
    from edgekit.child_process import reusing_children
    from edgekit.targets.tflite_converter import PreparedModel

    converted, reports = {}, {}
    with reusing_children():
        for estimator in ("minmax", "percentile", "mse"):
            with PreparedModel(model, what="small net", representative=calibration, activation_ranges=estimator,
                               percentile=99.0) as prepared:
                converted[estimator] = prepared.convert("int8")
                reports[estimator] = prepared.range_reports[0] if prepared.range_reports else None
    return converted, reports


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    """64 ordinary calibration images, one of them with a 30-sigma pixel (the outlier min/max keeps)."""
    images = np.random.default_rng(0).normal(size=(64, 24, 24, 3)).astype(np.float32)
    images[0, 12, 12] = 30.0
    return images


def _steps(model_bytes: bytes) -> dict[str, float]:
    """Each int8 activation tensor's quantization step (scale), by the op kind that writes it."""
    from edgekit.runtime.tflite_file import parse_tflite

    graph = parse_tflite(model_bytes).main
    return {op.op: graph.tensors[op.outputs[0]].scale[0] for op in graph.operators
            if graph.tensors[op.outputs[0]].dtype == "INT8" and op.op not in ("QUANTIZE", "DEQUANTIZE")}


def test_percentile_and_mse_narrow_the_ranges_an_outlier_stretched_and_leave_minmax_to_the_converter(calibration):
    converted, reports = _int8_by_estimator(small_depthwise_net("relu"), calibration)
    assert reports["minmax"] is None  # the converter's own path, untouched
    plain, clipped, fitted = _steps(converted["minmax"]), _steps(converted["percentile"]), _steps(converted["mse"])
    assert reports["percentile"]["narrowed"] >= 2 and reports["percentile"]["smallest_width_share"] < 0.5, reports
    assert clipped["DEPTHWISE_CONV_2D"] < 0.5 * plain["DEPTHWISE_CONV_2D"], (clipped, plain)
    # MSE clips only where the rounding it saves outweighs the clipped values' error: never wider than min/max
    assert reports["mse"]["narrowed"] >= 1 and all(fitted[op] <= plain[op] * 1.0001 for op in plain), (fitted, plain)
    assert converted["percentile"] != converted["minmax"] and converted["mse"] != converted["minmax"]


def test_the_logits_a_softmax_reads_keep_their_calibrated_range(calibration):
    converted, reports = _int8_by_estimator(small_depthwise_net("relu", "softmax"), calibration)
    plain = _steps(converted["minmax"])
    assert _steps(converted["percentile"])["DEPTHWISE_CONV_2D"] < 0.5 * plain["DEPTHWISE_CONV_2D"]
    for estimator in ("percentile", "mse"):
        assert reports[estimator]["narrowed"] >= 1
        assert _steps(converted[estimator])["FULLY_CONNECTED"] == plain["FULLY_CONNECTED"], estimator


def test_mse_clip_minimizes_expected_quantization_error_of_a_heavy_tailed_histogram():
    from edgekit.targets.activation_ranges import BINS, _mse_range, quantization_mse

    counts = np.zeros(BINS, dtype=np.int64)
    counts[: BINS // 10] = 100_000  # the bulk of the values in the lowest tenth of [0, 10]
    counts[-1] = 1  # one outlier at the calibration max
    low, high = _mse_range(counts, 0.0, 10.0)
    assert low == 0.0 and high < 5.0
    assert quantization_mse(counts, 0.0, 10.0, low, high) < quantization_mse(counts, 0.0, 10.0, 0.0, 10.0) / 4


def test_an_unknown_estimator_is_a_usage_error_naming_the_choices():
    from types import SimpleNamespace

    from edgekit.errors import UsageError
    from edgekit.targets.tflite_converter import PreparedModel

    with pytest.raises(UsageError, match="minmax, percentile, mse"):
        PreparedModel(SimpleNamespace(weights=[]), what="m", activation_ranges="entropy")


def test_the_guards_layer_ranking_scores_the_narrowed_ranges_its_candidates_get(calibration):
    """The debugger, given a converter, would calibrate min/max itself: each layer it scores must carry the int8
    step of the same tensor in the model the guard then converts (percentile here, min/max as the control)."""
    from edgekit.child_process import reusing_children
    from edgekit.runtime.tflite_file import parse_tflite
    from edgekit.targets.tflite_converter import PreparedModel

    model, debugger_steps, candidate_steps = small_depthwise_net("relu"), {}, {}
    with reusing_children():
        for estimator in ("minmax", "percentile"):
            with PreparedModel(model, what="small net", representative=calibration, activation_ranges=estimator,
                               percentile=99.0) as prepared:
                debugger_steps[estimator] = {row["tensor_name"]: row["scale"] for row in prepared.layer_stats()}
                graph = parse_tflite(prepared.convert("int8")).main
                candidate_steps[estimator] = {t.name: t.scale[0] for t in graph.tensors if t.dtype == "INT8"}
    for estimator, steps in debugger_steps.items():
        shared = steps.keys() & candidate_steps[estimator].keys()  # the int8 logits are renamed where io is float
        assert len(shared) >= 4, (steps, candidate_steps[estimator])
        for name in shared:
            assert steps[name] == pytest.approx(candidate_steps[estimator][name], rel=1e-6), (estimator, name)
    narrowed = [name for name in debugger_steps["percentile"]
                if debugger_steps["percentile"][name] < 0.5 * debugger_steps["minmax"][name]]
    assert narrowed, (debugger_steps, "percentile ranking saw no narrowed range")


@pytest.mark.parametrize("estimator, carried", [("percentile", [[False], [False, True], [True], [False, False]]),
                                                ("minmax", [[False], [False, False], [True], [False, False]])])
def test_int8_candidates_of_one_model_share_one_calibration_and_equal_a_freshly_calibrated_one(
        calibration, estimator, carried, monkeypatch):
    # The guard converts up to a dozen candidates (layers kept float) from one model: each reuses the calibrated
    # (and narrowed) model of the first conversion that made one, instead of running the images through the
    # model twice more, and must come out byte-identical to a conversion that calibrated on its own. Plain
    # min/max int8 is the converter's own one-step conversion, so there the first candidate calibrates. Jobs
    # sent to one child together share the calibration there (the last, fresh model's two candidates).
    from edgekit.child_process import reusing_children
    from edgekit.runtime.tflite_file import parse_tflite
    from edgekit.targets import tflite_converter
    from edgekit.targets.tflite_converter import PreparedModel

    model = small_depthwise_net("relu6")
    sent, run_child = [], tflite_converter._run_child
    monkeypatch.setattr(tflite_converter, "_run_child",
                        lambda function, *args, what: sent.append(args[-1]) or run_child(function, *args, what=what))
    with reusing_children():
        with PreparedModel(model, what="small net", representative=calibration, activation_ranges=estimator) as one:
            graph = parse_tflite(one.convert("int8")).main
            names = {op.op: graph.tensors[op.outputs[0]].name for op in graph.operators}
            _, depthwise_float = one.convert_many([("float16", "float32", ()),
                                                   ("int8", "float32", (names["DEPTHWISE_CONV_2D"],))])
            conv_float = one.convert("int8", denylisted_nodes=(names["CONV_2D"],))
        with PreparedModel(model, what="small net", representative=calibration, activation_ranges=estimator) as fresh:
            alone = fresh.convert_many([("int8", "float32", (names["DEPTHWISE_CONV_2D"],)),
                                        ("int8", "float32", (names["CONV_2D"],))])

    assert [["calibration" in job for job in jobs] for jobs in sent] == carried
    assert [depthwise_float, conv_float] == alone
    kept_dtype = {op.op: parse_tflite(depthwise_float).main.tensors[op.outputs[0]].dtype
                  for op in parse_tflite(depthwise_float).main.operators}
    assert kept_dtype["DEPTHWISE_CONV_2D"] == "FLOAT32" and kept_dtype["FULLY_CONNECTED"] == "INT8"
    assert len(one.range_reports) == (3 if estimator == "percentile" else 0)
    assert all(report == one.range_reports[0] for report in one.range_reports)
