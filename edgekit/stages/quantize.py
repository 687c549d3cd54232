"""Quantization: QAT (optionally pruning- or cluster-preserving) and the accuracy-guarded int8 search.

Post-training modes themselves (float16, dynamic, int8, int16x8) are converter settings in
:mod:`edgekit.targets.tflite_converter`. The guard converts plain int8 first; when top-1 may drop more than
allowed it asks the TFLite quantization debugger which layers lose most (RMSE / scale of each
layer's output) per byte that keeping them float costs, and keeps the fewest of them in float with
which the drop fits on a tuning split; a disjoint certification split then certifies (or refuses)
the choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from edgekit.errors import AccuracyError
from edgekit.metrics import drop_upper_bound
from edgekit.stages.tfmot_wrappers import TrainingImages, distillation_targets, fine_tune, wrap_model

LEARNING_RATE = 1e-5
PRESERVE = (None, "prune", "cluster")


def qat_model(model, images: TrainingImages, *, epochs: int, tfmot_wrap: str, seed: int,
              preserve: str | None = None, distill: bool = False, learning_rate: float = LEARNING_RATE):
    """Quantization-aware fine-tune; ``preserve`` keeps earlier pruning sparsity or clusters intact.

    With ``distill`` (``--qat-distill``) it learns ``model``'s own softened outputs instead of the labels: what
    compress reports for an int8 model is its loss against that float model and their top-1 agreement, and
    trained on labels QAT moved MobileNetV2's weights away from its parent (agreement 0.865 after one epoch).
    Distilled it agreed 0.876 after one epoch, still below plain int8's 0.910 (README: int8 recovery).
    """
    from edgekit._tf import import_tfmot

    tfmot = import_tfmot()
    targets, loss, distillation = images, None, None
    if distill:  # before wrapping: the float model QAT starts from is the teacher
        targets, loss, distillation = distillation_targets(
            model, images, description="the float model's softmax outputs on the training images, before QAT")
    quant = tfmot.quantization.keras
    schemes = {"prune": tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme,
               "cluster": tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme}
    scheme = schemes[preserve]() if preserve else None

    def apply(annotated):
        return quant.quantize_apply(annotated, scheme) if scheme else quant.quantize_apply(annotated)

    wrapped = wrap_model(model, wrap_layer=quant.quantize_annotate_layer,
                         wrap_whole=lambda m: apply(quant.quantize_annotate_model(m)),
                         tfmot_wrap=tfmot_wrap, what="--qat")
    if tfmot_wrap == "selective":
        wrapped = apply(wrapped)
    history = fine_tune(wrapped, targets, epochs=epochs, learning_rate=learning_rate, seed=seed, description="qat",
                        loss=loss)
    return wrapped, {"preserve": preserve or "none", "distillation": distillation, "fine_tune": history}


def guarded_int8(prepared, *, plain: bytes, io_dtype: str, tune: Callable[[bytes], dict],
                 certify: Callable[[bytes], dict], max_drop_points: float, float32_tflite_bytes: int,
                 correct: Callable[[bytes], tuple[bytes, dict]] | None = None) -> tuple[bytes, dict]:
    """Int8 bytes certified to lose at most ``max_drop_points`` top-1 points, keeping as few bytes float as it can.

    ``tune`` and ``certify`` score a candidate (:func:`edgekit.metrics.accuracy_change`) on two
    disjoint sets of held-out images. Layers are chosen on the tuning set only: the debugger's
    layers ranked by int8 error per byte that keeping them float costs (:func:`rank_by_error_per_byte`),
    then the shortest prefix of that ranking whose tuning upper bound is within the limit, found by
    doubling the prefix (1, 2, 4, ...) and then bisecting between the last failing and first passing
    length. The tuning bound is widened for the number of looks the search may take (Bonferroni):
    with the plain 95% bound, bisection on ~700 images picked a count that passed by chance and then
    failed certification (Lite0 128 px: 16 layers, certification upper bound 2.02 against 1.5). The
    choice is then checked once on the certification set, which it never saw; certified means that
    set's one-sided 95% upper bound of the drop is within the limit. The converter can keep
    layers out of int8 only in float32 (no per-layer int16x8 or float16), so a kept layer costs 3 bytes
    per weight. Each try is printed (layers, bytes kept float, tuning drop, time left).
    ``correct`` (``--bias-correction``) bias-corrects each converted candidate, in full, before it is scored
    (``plain`` comes already corrected), so the layers kept float are those bias correction cannot repair.
    Raises AccuracyError with every number, and the smallest bound these images certify, otherwise.
    """
    import time

    from edgekit.progress import status, time_left
    from edgekit.runtime.tflite_file import operator_output_names

    report: dict = {"max_accuracy_drop_points": max_drop_points, "kept_float_layers": [],
                    "kept_layers_precision": "float32 (the TFLite converter cannot keep single layers in "
                                             "int16x8 or float16 inside an int8 model)",
                    "candidates_bias_corrected": correct is not None}
    tried: dict[int, tuple[bytes, dict]] = {}
    # Plain int8, then doubling and bisection over at most as many layers as the operators write tensors: the
    # most times the search looks at the tuning split. Each look's bound is widened for that many (see
    # drop_upper_bound). Counted with the light reader: the whole graph is parsed only when plain int8 fails.
    looks = 1 + 2 * max(math.ceil(math.log2(max(len(operator_output_names(plain)), 1))), 1)
    report["tuning_looks"] = looks

    def attempt(kept: int, data: bytes, float_bytes: int = 0) -> dict:
        correction = None
        if correct is not None and kept:
            data, correction = correct(data)
        found = tune(data)
        report["tuning_images"] = found["images"]
        upper = drop_upper_bound(found["only_parent_right"], found["only_model_right"], found["images"], looks=looks)
        row = {"kept_float": kept, "float_weight_bytes": float_bytes, "tuning_drop_points": found["drop_points"],
               "tuning_upper_points": upper, "tuning_agreement": found["top1_agreement"],
               "within": upper <= max_drop_points}
        if correction is not None:
            row["bias_correction"] = {key: value for key, value in correction.items() if key != "per_layer"}
        tried[kept] = (data, row)
        return row

    first = attempt(0, plain)
    status(f"[guarded int8] {'bias-corrected' if correct else 'plain'} int8: tuning drop "
           f"{first['tuning_drop_points']:.2f} points, upper bound "
           f"{first['tuning_upper_points']:.2f} (95% over {looks} looks; limit {max_drop_points:g})")
    kept = 0
    if not first["within"]:
        status("[guarded int8] ranking layers by int8 error per byte kept float (TFLite quantization debugger) ...")
        ranked = rank_by_error_per_byte(prepared.layer_stats(), float_cost_bytes(plain))
        report["ranked_layers"] = [{key: (round(row[key], 4) if key == "rmse_over_scale" else row[key])
                                    for key in ("tensor_name", "rmse_over_scale", "float_cost_bytes")}
                                   for row in ranked[:20]]
        names = [row["tensor_name"] for row in ranked]
        failing, passing, started = 0, None, time.perf_counter()
        while passing is None or passing - failing > 1:
            count = min(2 * failing or 1, len(names)) if passing is None else (failing + passing) // 2
            cost = sum(row["float_cost_bytes"] for row in ranked[:count])
            row = attempt(count, prepared.convert("int8", io_dtype=io_dtype, denylisted_nodes=tuple(names[:count])),
                          cost)
            if row["within"]:
                passing = count
            else:
                failing = count
            steps = (math.ceil(math.log2(len(names) / count)) + math.ceil(math.log2(count)) if passing is None
                     else math.ceil(math.log2(max(passing - failing, 1))))
            status(f"[guarded int8] try {len(tried) - 1}: {count}/{len(names)} layers float ({cost / 1e3:,.1f} kB "
                   f"more than int8; up to {_short(names[count - 1])}): tuning drop {row['tuning_drop_points']:.2f} "
                   f"points (upper {row['tuning_upper_points']:.2f}); "
                   + ("within the limit, " if row["within"] else "")
                   + time_left((time.perf_counter() - started) / (len(tried) - 1), steps, at_most=True))
            if passing is None and count == len(names):
                break
        kept = passing if passing is not None else len(names)
        report["kept_float_layers"] = names[:kept]
    chosen = tried[kept][0]
    report["attempts"] = [row for _, row in tried.values()]
    certificate = certify(chosen)
    report.update({
        "certification": {key: certificate[key] for key in (
            "images", "drop_points", "interval95_points", "upper95_points", "top1_agreement", "source",
            "source_is_training_data")},
        "certified": certificate["upper95_points"] <= max_drop_points,
        "smallest_certifiable_bound_points": certificate["upper95_points"],
        "size_vs_float32_tflite": round(len(chosen) / float32_tflite_bytes, 4),
        "size_vs_plain_int8": round(len(chosen) / len(plain), 4)})
    status(f"[guarded int8] certification on {certificate['images']} other images: drop "
           f"{certificate['drop_points']:.2f} points, 95% upper bound {certificate['upper95_points']:.2f}: "
           + ("certified" if report["certified"] else "NOT certified"))
    if not report["certified"]:
        tries = ", ".join(f"{a['kept_float']} float: {a['tuning_drop_points']:.2f}" for a in report["attempts"])
        raise AccuracyError(
            f"--max-accuracy-drop {max_drop_points:g} not certified: with {kept} layer(s) kept float the "
            f"drop on {certificate['images']} certification images is {certificate['drop_points']:.2f} points "
            f"(95% upper bound {certificate['upper95_points']:.2f}); the smallest bound these images certify "
            f"is {certificate['upper95_points']:.2f} (tuning drops in points: {tries})",
            fix=f"use --max-accuracy-drop {certificate['upper95_points']:.2f} or more, give --eval-data more "
                "held-out images, or try --int16x8 / --qat")
    if kept:
        from edgekit.runtime.backends import median_latency_ms

        plain_ms, guarded_ms = median_latency_ms(plain), median_latency_ms(chosen)
        report.update(latency_ms={"plain_int8": round(plain_ms, 3), "guarded": round(guarded_ms, 3)},
                      latency_vs_plain_int8=round(guarded_ms / plain_ms, 3))
    return chosen, report


def float_cost_bytes(int8_model: bytes) -> dict[str, int]:
    """Bytes each op (by its output tensor's name) adds when kept float: its int8 weights grow to float32 (x4)."""
    from edgekit.runtime.tflite_file import parse_tflite

    graph = parse_tflite(int8_model).main
    costs = {}
    for op in graph.operators:
        weights = [graph.tensors[i] for i in op.inputs if i >= 0]
        extra = 3 * sum(t.buffer_size for t in weights if t.is_constant and t.dtype == "INT8")
        for index in op.outputs:
            costs[graph.tensors[index].name] = extra
    return costs


def rank_by_error_per_byte(layer_stats: list[dict], costs: dict[str, int]) -> list[dict]:
    """The debugger's layers, those whose int8 error (RMSE / scale) per byte kept float is highest first.

    An op without weights (add, pooling) costs nothing to keep float but a quantize/dequantize pair;
    it is charged as much as the cheapest layer with weights, so a near-zero error never ranks first.
    """
    floor = min((cost for cost in costs.values() if cost), default=1)
    rows = [dict(row, float_cost_bytes=costs.get(row["tensor_name"], 0)) for row in layer_stats]
    return sorted(rows, key=lambda row: -row["rmse_over_scale"] / max(row["float_cost_bytes"], floor))


def _short(tensor_name: str) -> str:
    """A readable layer name from a fused TFLite tensor name: the layer of its last op
    (``model/block16_project_bn/FusedBatchNormV3;model/block16_project/Conv2D1`` -> ``block16_project``)."""
    parts = tensor_name.split(";")[-1].split("/")
    return parts[1] if len(parts) >= 3 else parts[-1]
