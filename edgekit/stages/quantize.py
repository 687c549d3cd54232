"""Quantization: QAT (optionally pruning- or cluster-preserving) and the accuracy-guarded int8 search.

Post-training modes themselves (float16, dynamic, int8, int16x8) are converter settings in
:mod:`edgekit.targets.tflite`. The guard converts plain int8 first; when top-1 drops more than
allowed it asks the TFLite quantization debugger which layers lose most (RMSE / scale of each
layer's output) and keeps the worst ones in float, doubling their number until the drop fits.
"""

from __future__ import annotations

from collections.abc import Callable

from edgekit.errors import AccuracyError
from edgekit.stages.optimize import TrainingImages, fine_tune, wrap_model

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


def guarded_int8(prepared, *, plain: bytes, io_dtype: str, accuracy_of: Callable[[bytes], float],
                 float_accuracy: float, max_drop_points: float) -> tuple[bytes, dict]:
    """Int8 bytes whose top-1 drop vs float is within ``max_drop_points``, keeping the worst layers float.

    ``plain`` is the fully-int8 conversion; ``accuracy_of`` measures top-1 (0..1) on held-out images.
    Raises AccuracyError with every attempt's numbers when even an all-float-kept model misses.
    """
    import math
    import time

    from edgekit.progress import status, time_left
    from edgekit.targets.tflite import median_latency_ms

    def drop(data: bytes) -> float:
        return round((float_accuracy - accuracy_of(data)) * 100.0, 3)

    attempts = [{"kept_float": 0, "top1_drop_points": drop(plain)}]
    report = {"max_accuracy_drop_points": max_drop_points, "kept_float_layers": [], "attempts": attempts}
    status(f"[guarded int8] plain int8: top-1 drop {attempts[0]['top1_drop_points']:.2f} points "
           f"(limit {max_drop_points:g})")
    if attempts[0]["top1_drop_points"] <= max_drop_points:
        return plain, report | {"top1_drop_points": attempts[0]["top1_drop_points"]}
    status("[guarded int8] ranking layers by int8 error (TFLite quantization debugger) ...")
    ranked = prepared.layer_stats()
    report["layer_rmse_over_scale"] = {row["tensor_name"]: round(row["rmse_over_scale"], 4) for row in ranked[:20]}
    count, previous, started = 1, 0, time.perf_counter()
    while True:
        count = min(count, len(ranked))
        denied = tuple(row["tensor_name"] for row in ranked[:count])
        data = prepared.convert("int8", io_dtype=io_dtype, denylisted_nodes=denied)
        attempts.append({"kept_float": count, "top1_drop_points": drop(data)})
        tries_left = math.ceil(math.log2(len(ranked) / count)) if count < len(ranked) else 0
        added = ", ".join(_short(name) for name in denied[previous:previous + 3]) + (", ..." if count - previous > 3 else "")
        previous = count
        status(f"[guarded int8] try {len(attempts) - 1}: {count}/{len(ranked)} layers float (added {added}): "
               f"drop {attempts[-1]['top1_drop_points']:.2f} points; "
               + ("within the limit" if attempts[-1]["top1_drop_points"] <= max_drop_points else
                  time_left((time.perf_counter() - started) / (len(attempts) - 1), tries_left, at_most=True)))
        if attempts[-1]["top1_drop_points"] <= max_drop_points:
            plain_ms, guarded_ms = median_latency_ms(plain), median_latency_ms(data)
            return data, report | {
                "kept_float_layers": list(denied), "top1_drop_points": attempts[-1]["top1_drop_points"],
                "size_vs_plain_int8": round(len(data) / len(plain), 4),
                "latency_ms": {"plain_int8": round(plain_ms, 3), "guarded": round(guarded_ms, 3)},
                "latency_vs_plain_int8": round(guarded_ms / plain_ms, 3)}
        if count == len(ranked):
            tried = ", ".join(f"{a['kept_float']} float: {a['top1_drop_points']:.2f}" for a in attempts)
            raise AccuracyError(
                f"--max-accuracy-drop {max_drop_points}: int8 top-1 drop stays above the limit even with all "
                f"{len(ranked)} quantized layers kept float (float top-1 {float_accuracy:.4f}; drops in points: {tried})",
                fix="raise --max-accuracy-drop, use more --eval-data images, or try --qat / --int16x8")
        count *= 2


def _short(tensor_name: str) -> str:
    """A readable layer name from a fused TFLite tensor name: the layer of its last op
    (``model/block16_project_bn/FusedBatchNormV3;model/block16_project/Conv2D1`` -> ``block16_project``)."""
    parts = tensor_name.split(";")[-1].split("/")
    return parts[1] if len(parts) >= 3 else parts[-1]
