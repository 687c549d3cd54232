"""Quantization: QAT (optionally pruning- or cluster-preserving) and the accuracy-guarded int8 search.

Post-training modes themselves (float16, dynamic, int8, int16x8) are converter settings in
:mod:`edgekit.targets.tflite_converter`. The guard converts plain int8 first; when top-1 may drop more than
allowed it asks the TFLite quantization debugger which layers lose most (RMSE / scale of each
layer's output) and keeps the worst ones in float, doubling their number until the drop fits on a
tuning split; a disjoint certification split then certifies (or refuses) the choice.
"""

from __future__ import annotations

from collections.abc import Callable

from edgekit.errors import AccuracyError
from edgekit.stages.tfmot_wrappers import TrainingImages, fine_tune, wrap_model

LEARNING_RATE = 1e-5
PRESERVE = (None, "prune", "cluster")


def qat_model(model, images: TrainingImages, *, epochs: int, tfmot_wrap: str, seed: int,
              preserve: str | None = None):
    """Quantization-aware fine-tune; ``preserve`` keeps earlier pruning sparsity or clusters intact."""
    from edgekit._tf import import_tfmot

    tfmot = import_tfmot()
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
    history = fine_tune(wrapped, images, epochs=epochs, learning_rate=LEARNING_RATE, seed=seed, description="qat")
    return wrapped, {"preserve": preserve or "none", "fine_tune": history}


def guarded_int8(prepared, *, plain: bytes, io_dtype: str, tune: Callable[[bytes], dict],
                 certify: Callable[[bytes], dict], max_drop_points: float,
                 float32_tflite_bytes: int) -> tuple[bytes, dict]:
    """Int8 bytes certified to lose at most ``max_drop_points`` top-1 points, keeping the worst layers float.

    ``tune`` and ``certify`` score a candidate (:func:`edgekit.metrics.accuracy_change`) on two
    disjoint sets of held-out images. Layers are chosen on the tuning set only: the fewest (1, 2, 4,
    ... of the debugger's worst) whose tuning upper bound is within the limit. The choice is then
    checked once on the certification set, which it never saw; certified means that set's one-sided
    95% upper bound of the drop is within the limit. The converter can keep layers out of int8
    only in float32 (no per-layer int16x8 or float16), so each kept layer costs its full float size.
    Each try is printed (layers added, tuning drop, time left), as the search can take minutes.
    Raises AccuracyError with every number, and the smallest bound these images certify, otherwise.
    """
    import math
    import time

    from edgekit.progress import status, time_left

    def attempt(kept: int, data: bytes) -> dict:
        found = tune(data)
        report["tuning_images"] = found["images"]
        return {"kept_float": kept, "tuning_drop_points": found["drop_points"],
                "tuning_upper95_points": found["upper95_points"], "tuning_agreement": found["top1_agreement"]}

    report: dict = {"max_accuracy_drop_points": max_drop_points, "kept_float_layers": [],
                    "kept_layers_precision": "float32 (the TFLite converter cannot keep single layers in "
                                             "int16x8 or float16 inside an int8 model)"}
    attempts = report["attempts"] = [attempt(0, plain)]
    status(f"[guarded int8] plain int8: tuning drop {attempts[0]['tuning_drop_points']:.2f} points, 95% upper "
           f"bound {attempts[0]['tuning_upper95_points']:.2f} (limit {max_drop_points:g})")
    chosen, denied = plain, ()
    if attempts[0]["tuning_upper95_points"] > max_drop_points:
        status("[guarded int8] ranking layers by int8 error (TFLite quantization debugger) ...")
        ranked = prepared.layer_stats()
        report["layer_rmse_over_scale"] = {row["tensor_name"]: round(row["rmse_over_scale"], 4) for row in ranked[:20]}
        count, previous, started = 1, 0, time.perf_counter()
        while True:
            count = min(count, len(ranked))
            denied = tuple(row["tensor_name"] for row in ranked[:count])
            chosen = prepared.convert("int8", io_dtype=io_dtype, denylisted_nodes=denied)
            attempts.append(attempt(count, chosen))
            within = attempts[-1]["tuning_upper95_points"] <= max_drop_points
            tries_left = math.ceil(math.log2(len(ranked) / count)) if count < len(ranked) else 0
            added = ", ".join(_short(name) for name in denied[previous:previous + 3]) + (
                ", ..." if count - previous > 3 else "")
            previous = count
            status(f"[guarded int8] try {len(attempts) - 1}: {count}/{len(ranked)} layers float (added {added}): "
                   f"tuning drop {attempts[-1]['tuning_drop_points']:.2f} points (upper "
                   f"{attempts[-1]['tuning_upper95_points']:.2f}); "
                   + ("within the limit" if within else
                      time_left((time.perf_counter() - started) / (len(attempts) - 1), tries_left, at_most=True)))
            if within or count == len(ranked):
                break
            count *= 2
    certificate = certify(chosen)
    report.update({
        "kept_float_layers": list(denied),
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
        tried = ", ".join(f"{a['kept_float']} float: {a['tuning_drop_points']:.2f}" for a in attempts)
        raise AccuracyError(
            f"--max-accuracy-drop {max_drop_points:g} not certified: with {len(denied)} layer(s) kept float the "
            f"drop on {certificate['images']} certification images is {certificate['drop_points']:.2f} points "
            f"(95% upper bound {certificate['upper95_points']:.2f}); the smallest bound these images certify "
            f"is {certificate['upper95_points']:.2f} (tuning drops in points: {tried})",
            fix=f"use --max-accuracy-drop {certificate['upper95_points']:.2f} or more, give --eval-data more "
                "held-out images, or try --int16x8 / --qat")
    if denied:
        from edgekit.runtime.backends import median_latency_ms

        plain_ms, guarded_ms = median_latency_ms(plain), median_latency_ms(chosen)
        report.update(latency_ms={"plain_int8": round(plain_ms, 3), "guarded": round(guarded_ms, 3)},
                      latency_vs_plain_int8=round(guarded_ms / plain_ms, 3))
    return chosen, report


def _short(tensor_name: str) -> str:
    """A readable layer name from a fused TFLite tensor name: the layer of its last op
    (``model/block16_project_bn/FusedBatchNormV3;model/block16_project/Conv2D1`` -> ``block16_project``)."""
    parts = tensor_name.split(";")[-1].split("/")
    return parts[1] if len(parts) >= 3 else parts[-1]
