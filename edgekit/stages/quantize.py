"""Quantization: QAT (optionally pruning- or cluster-preserving) and the accuracy-guarded int8 search.

Post-training modes themselves (float16, dynamic, int8, int16x8) are converter settings in
:mod:`edgekit.targets.tflite_converter`. The guard scores plain int8 first, then asks the TFLite
quantization debugger which layers lose most (RMSE / scale of each layer's output) per byte that keeping
them float costs, and keeps the fewest of them in float (plain int8 being zero) with which the drop fits
on a tuning split, confirmed by the next longer try; a disjoint certification split then certifies (or
refuses) the choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgekit.errors import AccuracyError
from edgekit.metrics import drop_upper_bound
from edgekit.stages.tfmot_wrappers import BATCH_SIZE, TrainingImages, distillation_targets, fine_tune, wrap_model

LEARNING_RATE = 1e-5
PRESERVE = (None, "prune", "cluster")


def qat_model(model, images: TrainingImages, *, calibration: np.ndarray | None, epochs: int, tfmot_wrap: str, seed: int,
              preserve: str | None = None, distill: bool = False, learning_rate: float = LEARNING_RATE):
    """Quantization-aware fine-tune; ``preserve`` keeps earlier pruning sparsity or clusters intact.

    Before training, every activation range starts at what the float model's activations span on the
    ``calibration`` inputs (normalised; :func:`initialise_activation_ranges`); None keeps tfmot's start of
    [-6, 6] (the benchmark's control).

    With ``distill`` (``--qat-distill``) it learns ``model``'s own softened outputs instead of the labels: what
    compress reports for an int8 model is its loss against that float model and their top-1 agreement, and
    trained on labels QAT moved MobileNetV2's weights away from its parent (agreement 0.865 after one epoch).
    Distilled it agreed 0.876 after one epoch from tfmot's ranges, 0.918 from calibrated ranges (plain int8:
    0.910; README: int8 recovery).
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
    ranges = None if calibration is None else initialise_activation_ranges(wrapped, model, calibration)
    history = fine_tune(wrapped, targets, epochs=epochs, learning_rate=learning_rate, seed=seed, description="qat",
                        loss=loss)
    return wrapped, {"preserve": preserve or "none", "distillation": distillation, "activation_ranges": ranges,
                     "fine_tune": history}


# The range variables of tfmot's activation quantizers (MovingAverageQuantizer) on a QuantizeWrapper, by the
# name each is built under: the wrapper's output, and its activation's input and output (QuantizeAwareActivation).
# Weight quantizers' (kernel_min, ...) are recomputed from the weights at every step.
WRAPPER_RANGES = {"output": "output", "post_activation": "output", "pre_activation": "pre-activation"}


def initialise_activation_ranges(quantized, float_model, calibration: np.ndarray,
                                 batch_size: int = BATCH_SIZE) -> dict:
    """Set each activation quantizer's range in ``quantized`` (tfmot's QAT model of ``float_model``) to the
    min/max its tensor takes in ``float_model`` over the ``calibration`` inputs, widened to hold 0 as tfmot
    and TFLite require; return the record for the manifest.

    tfmot starts every range at [-6, 6] and moves it by an EMA with decay 0.999, so after one epoch on a small
    folder the ranges are still mostly where they started: MobileNetV2 QAT-wrapped with unchanged weights
    scored +3.93 points after an epoch of forward passes, against +2.09 for plain int8 (README: int8 recovery).
    From the calibrated min/max (what the int8 converter's own calibration measures) QAT starts where plain
    int8 is. Each tensor is read where the float model computes it: a wrapped layer's output (activation
    included) or its pre-activation (the layer's linear twin on the same input), and the input of a
    QuantizeLayer (a non-wrapper holding ranges). A range the float model has no layer for keeps tfmot's start.
    """
    from edgekit._tf import import_tf, import_tfmot

    _, tf_keras = import_tf()
    wrapper = import_tfmot().quantization.keras.QuantizeWrapperV2
    targets, left = [], 0  # targets: (min variable, max variable, (float layer name, which tensor))
    for layer in quantized.layers:
        variables = {weight.name.split("/")[-1].split(":")[0]: weight for weight in layer.weights}
        if isinstance(layer, wrapper):
            wanted = {name: (layer.layer.name, tensor) for name, tensor in WRAPPER_RANGES.items()}
        else:  # a QuantizeLayer: the range of its input, the output of the layer feeding it
            feeding = layer.inbound_nodes[0].inbound_layers if layer.inbound_nodes else []
            wanted = {name[:-4]: (feeding.name, "output") for name in variables
                      if name.endswith("_min") and not isinstance(feeding, list)}
        for name, source in wanted.items():
            if f"{name}_min" not in variables or f"{name}_max" not in variables:
                continue
            if _single_use_layer(float_model, source[0]) is None:
                left += 1
                continue
            targets.append((variables[f"{name}_min"], variables[f"{name}_max"], source))
    sources = list(dict.fromkeys(source for _, _, source in targets))
    twins = {name: _linear_twin(float_model.get_layer(name)) for name, tensor in sources if tensor == "pre-activation"}
    probe = tf_keras.Model(float_model.inputs, [
        float_model.get_layer(name).input if tensor == "pre-activation" else float_model.get_layer(name).output
        for name, tensor in sources])
    low = np.full(len(sources), np.inf)
    high = np.full(len(sources), -np.inf)
    for start in range(0, len(calibration), batch_size):
        values = probe(calibration[start:start + batch_size], training=False)
        for index, ((name, _), value) in enumerate(zip(sources, values if len(sources) > 1 else [values])):
            value = np.asarray(twins[name](value) if name in twins else value)
            low[index], high[index] = min(low[index], value.min()), max(high[index], value.max())
    before, after = [], []
    for minimum, maximum, source in targets:
        index = sources.index(source)
        before.append(float(np.max(maximum.numpy()) - np.min(minimum.numpy())))
        minimum.assign(np.full(minimum.shape, min(low[index], 0.0), minimum.dtype.as_numpy_dtype))
        maximum.assign(np.full(maximum.shape, max(high[index], 0.0), maximum.dtype.as_numpy_dtype))
        after.append(max(high[index], 0.0) - min(low[index], 0.0))
    return {"initialised": len(targets), "left_at_tfmot_start": left, "from_images": len(calibration),
            "statistic": "min/max over the calibration images in the float model, as int8 calibration takes them",
            "median_width_before": _median(before), "median_width_after": _median(after)}


def _single_use_layer(model, name: str):
    """``model``'s layer ``name`` if it has one and calls it once (so its input/output is one tensor), else None."""
    try:
        layer = model.get_layer(name)
    except ValueError:
        return None
    return layer if len(layer.inbound_nodes) == 1 else None


def _linear_twin(layer):
    """A copy of ``layer`` without its activation, same weights: it computes what the activation receives."""
    twin = type(layer).from_config({**layer.get_config(), "activation": "linear", "name": f"{layer.name}_linear"})
    twin.build(layer.input.shape)
    twin.set_weights(layer.get_weights())
    return twin


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 4) if values else None


# The guard's acceptance rule, recorded in the manifest (README: the certified guard).
ACCEPTANCE_RULE = (
    "a candidate passes when its tuning drop plus the one-sided margin the certification split will need at the "
    "tuning split's disagreement rates (level 0.05 / 2 certification looks) is within the bound; candidates are "
    "prefixes of the ranked layers, plain int8 being prefix 0; the shortest passing prefix whose next longer try "
    "also passes is chosen, and that next try is certified if it fails")
CERTIFICATION_ALPHA = 0.05


def guarded_int8(prepared, *, plain: bytes, io_dtype: str, tune: Callable[[bytes], dict],
                 certify: Callable[[bytes], dict], certification_images: int, max_drop_points: float,
                 float32_tflite_bytes: int,
                 correct: Callable[[bytes], tuple[bytes, dict]] | None = None) -> tuple[bytes, dict]:
    """Int8 bytes certified to lose at most ``max_drop_points`` top-1 points, keeping as few bytes float as it can.

    ``tune`` and ``certify`` score a candidate (:func:`edgekit.metrics.accuracy_change`) on two disjoint
    sets of held-out images (the second has ``certification_images``). The tuning set only chooses; the
    guarantee comes from the certification set alone. Layers: the debugger's, ranked by int8 error per
    byte kept float (:func:`rank_by_error_per_byte`) under the activation ranges the candidates get;
    candidates: prefixes of that ranking, plain int8 (0) first, then doubling (1, 2, 4, ...) and bisecting.

    A candidate passes tuning when its tuning drop plus the margin certification will need (the one-sided
    bound at the certification split's size, from the candidate's tuning disagreement rates) is within the
    limit: a prediction that certification passes, not a bound. The Bonferroni-widened tuning bound used
    before (level 0.05 / ~15 looks on 976 images) kept 65 of MobileNetV2's 70 layers float where 16 left a
    tuning drop of 0.10 points; this rule certified 10 (0.305x the float32 TFLite) on that parent, and
    nothing at 1.5 points on one re-finetuned on another CPU (README). Against chance passes
    (which prefix passes a 976-image split is partly chance): a prefix, plain int8 included, is chosen only
    when the next longer prefix tried passes too, and that longer one is the fallback, certified if the
    choice fails. The certification split is looked at at most twice, each look at level 0.025 (Bonferroni;
    one look at 0.05 when every layer float is the only candidate), so "certified" is a valid one-sided 95%
    bound over everything that looked at that split. Plain int8 passing tuning therefore costs a debugger
    run, a conversion and a tuning evaluation more than accepting it alone would (EfficientNet-Lite0 224:
    47 s of the guard's 142 s at load 1.4-2.9). The converter can keep layers out of int8 only in float32 (no
    per-layer int16x8 or float16), so a kept layer costs 3 bytes per weight. Each try is printed (layers, bytes
    kept float, tuning drop, time left). ``correct`` (``--bias-correction``) bias-corrects each converted
    candidate, in full, before it is scored (``plain`` comes already corrected), so the layers kept float are
    those bias correction cannot repair.
    Raises AccuracyError with every number, and the smallest bound these images certify, otherwise.
    """
    import time

    from edgekit.progress import status, time_left

    search_looks = 2  # certification looks a choice may take: itself and its fallback
    report: dict = {"max_accuracy_drop_points": max_drop_points, "kept_float_layers": [],
                    "kept_layers_precision": "float32 (the TFLite converter cannot keep single layers in "
                                             "int16x8 or float16 inside an int8 model)",
                    "candidates_bias_corrected": correct is not None, "acceptance_rule": ACCEPTANCE_RULE}
    tried: dict[int, tuple[bytes, dict]] = {}

    def attempt(kept: int, data: bytes, float_bytes: int = 0) -> dict:
        correction = None
        if correct is not None and kept:
            data, correction = correct(data)
        found = tune(data)
        report["tuning_images"] = found["images"]
        predicted = drop_upper_bound(found["only_parent_right"], found["only_model_right"], found["images"],
                                     looks=search_looks, at_images=certification_images)
        row = {"kept_float": kept, "float_weight_bytes": float_bytes, "tuning_drop_points": found["drop_points"],
               "predicted_certification_upper_points": predicted, "tuning_agreement": found["top1_agreement"],
               "within": predicted <= max_drop_points}
        if correction is not None:
            row["bias_correction"] = {key: value for key, value in correction.items() if key != "per_layer"}
        tried[kept] = (data, row)
        return row

    first = attempt(0, plain)
    status(f"[guarded int8] {'bias-corrected' if correct else 'plain'} int8: tuning drop "
           f"{first['tuning_drop_points']:.2f} points, predicted certification upper bound "
           f"{first['predicted_certification_upper_points']:.2f} (limit {max_drop_points:g})"
           + ("; chosen only if 1 layer float passes too" if first["within"] else ""))
    status("[guarded int8] ranking layers by int8 error per byte kept float (TFLite quantization debugger) ...")
    ranked = rank_by_error_per_byte(prepared.layer_stats(), float_cost_bytes(plain))
    report["ranked_layers"] = [{key: (round(row[key], 4) if key == "rmse_over_scale" else row[key])
                                for key in ("tensor_name", "rmse_over_scale", "float_cost_bytes")}
                               for row in ranked[:20]]
    names = [row["tensor_name"] for row in ranked]
    started = time.perf_counter()
    most_tries = 2 * math.ceil(math.log2(len(names))) + 1  # doubling, one confirmation, bisection

    def prefix(count: int) -> dict:
        if not count:  # plain int8, scored above
            return first
        cost = sum(row["float_cost_bytes"] for row in ranked[:count])
        row = attempt(count, prepared.convert("int8", io_dtype=io_dtype, denylisted_nodes=tuple(names[:count])),
                      cost)
        status(f"[guarded int8] try {len(tried) - 1}: {count}/{len(names)} layers float ({cost / 1e3:,.1f} kB "
               f"more than int8; up to {_short(names[count - 1])}): tuning drop {row['tuning_drop_points']:.2f} "
               f"points (predicted certification upper {row['predicted_certification_upper_points']:.2f}); "
               + ("within the limit, " if row["within"] else "")
               + time_left((time.perf_counter() - started) / (len(tried) - 1), most_tries - (len(tried) - 1),
                           at_most=True))
        return row

    candidates = _search(len(names), prefix)
    looks = len(candidates)
    alpha = CERTIFICATION_ALPHA / looks
    report.update(attempts=[row for _, row in tried.values()],
                  certification_plan={"candidates_kept_float": candidates, "looks_at_most": looks,
                                      "alpha_per_look": alpha, "confidence": 1 - CERTIFICATION_ALPHA})
    checked = []
    for kept in candidates:
        certificate = certify(tried[kept][0])
        upper = drop_upper_bound(certificate["only_parent_right"], certificate["only_model_right"],
                                 certificate["images"], looks=looks)
        checked.append((kept, certificate, upper))
        status(f"[guarded int8] certification of {kept} layer(s) float on {certificate['images']} other images: "
               f"drop {certificate['drop_points']:.2f} points, upper bound {upper:.2f} (level {alpha:g} per look, "
               f"{looks} look(s) at most): " + ("certified" if upper <= max_drop_points else "NOT certified"))
        if upper <= max_drop_points:
            break
    kept, certificate, upper = checked[-1]
    chosen = tried[kept][0]
    report["kept_float_layers"] = names[:kept]
    report.update({
        "certification": {key: certificate[key] for key in (
            "images", "drop_points", "interval95_points", "upper95_points", "top1_agreement", "source",
            "source_is_training_data")} | {"certified_upper_points": upper},
        "certification_looks": [{"kept_float": count, "drop_points": found["drop_points"], "upper_points": bound}
                                for count, found, bound in checked],
        "certified": upper <= max_drop_points,
        # Every look's bound holds at once with 95% (Bonferroni), so the lowest is what these images certify.
        "smallest_certifiable_bound_points": min(bound for _, _, bound in checked),
        "size_vs_float32_tflite": round(len(chosen) / float32_tflite_bytes, 4),
        "size_vs_plain_int8": round(len(chosen) / len(plain), 4)})
    if not report["certified"]:
        tries = ", ".join(f"{a['kept_float']} float: {a['tuning_drop_points']:.2f}" for a in report["attempts"])
        looked = "; ".join(f"{count} float: drop {found['drop_points']:.2f}, upper {bound:.2f}"
                           for count, found, bound in checked)
        smallest = report["smallest_certifiable_bound_points"]
        raise AccuracyError(
            f"--max-accuracy-drop {max_drop_points:g} not certified on {certificate['images']} certification "
            f"images ({looked}; one-sided 95% over {looks} look(s)); the smallest bound these images certify is "
            f"{smallest:.2f} (tuning drops in points: {tries})",
            fix=f"use --max-accuracy-drop {smallest:.2f} or more, give --eval-data more "
                "held-out images, or try --int16x8 / --qat", smallest_certifiable_bound_points=smallest)
    if kept:
        from edgekit.runtime.backends import median_latency_ms

        plain_ms, guarded_ms = median_latency_ms(plain), median_latency_ms(chosen)
        report.update(latency_ms={"plain_int8": round(plain_ms, 3), "guarded": round(guarded_ms, 3)},
                      latency_vs_plain_int8=round(guarded_ms / plain_ms, 3))
    return chosen, report


def _search(layers: int, within: Callable[[int], dict]) -> list[int]:
    """Prefix lengths to certify, in order: the shortest that passes (``within(count)["within"]``) and whose next
    longer try passes too, then that longer one (its fallback). Every layer float has nothing longer to confirm
    it and is certified alone; so it is when nothing passes.

    Tries 0 (plain int8), then doubles (1, 2, 4, ...) until two tries in a row pass (or every layer float passes),
    then bisects between the last failing length and the first of those; each bisection pass has the previous
    passing length, the next longer try, as its confirmation.
    """
    passing: list[int] = []  # passing lengths tried since the last failure
    failing, count = -1, 0  # -1: no length failed yet, so a passing 0 needs no bisection below it
    while len(passing) < 2 and (not passing or passing[-1] < layers):
        if within(count)["within"]:
            passing.append(count)
        else:
            failing, passing = count, []
        if count == layers and not passing:
            return [layers]
        count = min(max(2 * count, 1), layers)
    shortest, confirmation = passing[0], (passing[1:] or [None])[0]
    while shortest - failing > 1:
        middle = (failing + shortest) // 2
        if within(middle)["within"]:
            shortest, confirmation = middle, shortest
        else:
            failing = middle
    return [shortest] if confirmation is None else [shortest, confirmation]


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
