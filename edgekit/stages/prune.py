"""Magnitude pruning with recovery fine-tuning, and a sparsity report measured on the stripped weights.

``PolynomialDecay``'s default ``frequency=100`` prunes nothing when training has fewer steps than
that (silently; DESIGN.md), so the schedule is fitted to the real number of steps: sparsity ramps
up over the first ~60 % of the steps in ~6 mask updates, and the rest recover at the final mask.

Two targets (``--prune-for``): ``size`` prunes every Conv2D/Dense kernel (smaller gzip, same speed);
``latency`` prunes only the 1x1 convolutions, with tfmot's ``PruneForLatencyOnXNNPack`` policy,
so that XNNPACK can run them with its sparse kernels (:mod:`edgekit.stages.xnnpack_sparse`).

Latency pruning cuts >= 2/3 of every 1x1 convolution, and each cut moves the statistics of the
BatchNormalization behind it. Fine-tuned with those statistics frozen (as ``size`` pruning is), a
head-only finetuned MobileNetV2 at 70% collapsed to chance (training accuracy 0.39 then 0.11; top-1
drop +75.8 points). So for ``latency`` BatchNormalization trains with batch statistics, and after
stripping its moving statistics are re-estimated on the training images with the final weights.
Batch statistics are the training images', but a pretrained backbone's moving statistics are its
pretraining data's (ImageNet), and the head was fit to features normalised with those: re-estimating
alone cost even the *unpruned* MobileNetV2 18 points. So every BatchNormalization is first conformed
to the training images (:func:`~edgekit.stages.tfmot_wrappers.conform_batchnorm`: same function,
moving statistics = the images', the difference folded into scale and offset), and batch statistics,
training and re-estimation then start from the parent itself. Latency pruning also distils: the
pruned model learns the dense parent's softened outputs instead of the bare labels, which carry far
less per image, and consistently (:class:`~edgekit.stages.tfmot_wrappers.ConsistentDistillation`):
each batch is a new seeded view of the training images (crop, mirror, brightness, contrast) and the
parent, a frozen copy, is run on that same view. Re-estimation changes the features the classifier
was fine-tuned on, so last the classifier alone is refit to the parent's fixed outputs on the
unaugmented training images, on the features the pruned model now computes
(:func:`~edgekit.stages.tfmot_wrappers.refit_classifier`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import SparsePatternError, ValidationError
from edgekit.stages.tfmot_wrappers import (SPARSE_KINDS, ConsistentDistillation, TrainingImages, conform_batchnorm,
                                           distillation_targets, fine_tune, frozen_copy, layer_kind, main_kernel,
                                           reestimate_batchnorm, refit_classifier, wrap_model)

LEARNING_RATE = 1e-4
SPARSITY_TOLERANCE = 0.02  # achieved sparsity may fall short of the target by this much (rounding per layer)


@dataclass(frozen=True)
class Schedule:
    begin_step: int
    end_step: int
    frequency: int


def fit_schedule(total_steps: int) -> Schedule:
    """Mask updates that all happen within ``total_steps`` (the last one reaching the final sparsity)."""
    frequency = max(1, total_steps // 10)
    end_step = frequency * max(1, int(total_steps * 0.6) // frequency)
    return Schedule(begin_step=0, end_step=min(end_step, max(total_steps - 1, 0)), frequency=frequency)


def is_pointwise_conv(layer) -> bool:
    """A 1x1 Conv2D: the only layers XNNPACK computes sparse (and tfmot's latency policy prunes)."""
    return layer_kind(layer) == "conv" and tuple(layer.kernel_size) == (1, 1)


def sparsity_report(model, kinds: tuple[str, ...] = ("conv", "depthwise", "dense"), *,
                    pointwise_only: bool = False) -> dict:
    """Fraction of exactly-zero weights per layer type (conv, depthwise, dense) and overall, from the weights."""
    zeros: dict[str, int] = {}
    totals: dict[str, int] = {}
    for layer in model.layers:
        kind = layer_kind(layer)
        if kind not in kinds or (pointwise_only and not is_pointwise_conv(layer)):
            continue
        kernel = main_kernel(layer)
        zeros[kind] = zeros.get(kind, 0) + int(np.count_nonzero(kernel == 0))
        totals[kind] = totals.get(kind, 0) + int(kernel.size)
    report = {kind: {"sparsity": round(zeros[kind] / totals[kind], 4), "weights": totals[kind]} for kind in totals}
    total = sum(totals.values())
    report["overall"] = {"sparsity": round(sum(zeros.values()) / total, 4) if total else 0.0, "weights": total}
    return report


def _latency_wrapper(model, sparsity_api, decay):
    """The whole model wrapped under tfmot's XNNPACK latency policy, or SparsePatternError naming the rule it breaks.
    Every layer trains, BatchNormalization included (batch statistics: see the module docstring)."""
    from edgekit.stages.xnnpack_sparse import policy_violation

    rule = policy_violation(model)
    if rule:
        raise SparsePatternError(f"--prune-for latency: this model breaks XNNPACK's sparse-inference pattern: {rule}",
                                 fix="use a backbone that follows it (mobilenet_v2), or --prune-for size")
    model.trainable = True
    return sparsity_api.prune_low_magnitude(model, pruning_schedule=decay,
                                            pruning_policy=sparsity_api.PruneForLatencyOnXNNPack())


def prune_model(model, images: TrainingImages, *, sparsity: float, epochs: int, tfmot_wrap: str, seed: int,
                prune_for: str = "size"):
    """Prune to ``sparsity`` while fine-tuning on ``images``; return (stripped model, report)."""
    from edgekit._tf import import_tfmot

    tfmot = import_tfmot()
    sparsity_api = tfmot.sparsity.keras
    schedule = fit_schedule(images.steps_per_epoch() * epochs)
    decay = sparsity_api.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity,
                                         begin_step=schedule.begin_step, end_step=schedule.end_step,
                                         frequency=schedule.frequency)
    targets, training, loss, distillation, conformed = images, images, None, None, 0
    if prune_for == "latency":
        teacher = frozen_copy(model)  # before wrapping: the dense parent, which training cannot move
        targets, loss, distillation = distillation_targets(  # fixed targets: the refit and the record
            teacher, images, description="the dense parent's softmax outputs on the training images")
        training = ConsistentDistillation(teacher, images)
        distillation["augmentation"] = training.record(seed)
        conformed = conform_batchnorm(model, images)  # same function; batch statistics now agree with it
        wrapped = _latency_wrapper(model, sparsity_api, decay)
    else:
        wrapped = wrap_model(model, wrap_layer=lambda layer: sparsity_api.prune_low_magnitude(layer, pruning_schedule=decay),
                             wrap_whole=lambda m: sparsity_api.prune_low_magnitude(m, pruning_schedule=decay),
                             tfmot_wrap=tfmot_wrap, what="--prune", kinds=SPARSE_KINDS)
    history = fine_tune(wrapped, training, epochs=epochs, learning_rate=LEARNING_RATE, seed=seed,
                        callbacks=[sparsity_api.UpdatePruningStep()], description="prune", loss=loss)
    stripped = sparsity_api.strip_pruning(wrapped)
    batchnorm = refit = None
    if prune_for == "latency":
        batchnorm = (f"moving statistics re-estimated on {reestimate_batchnorm(stripped, images, seed=seed)} batches, "
                     f"{conformed} layers first conformed to the training images' statistics (same function)")
        refit = refit_classifier(stripped, targets, loss, seed=seed)  # it now reads re-estimated features
    report = sparsity_report(stripped)
    achieved = sparsity_report(stripped, kinds=SPARSE_KINDS, pointwise_only=prune_for == "latency")["overall"]["sparsity"]
    if achieved < sparsity - SPARSITY_TOLERANCE:
        raise ValidationError(f"--prune {sparsity} reached only {achieved:.3f} sparsity in the stripped weights "
                              f"(schedule {schedule})", fix="raise --fine-tune-epochs so the schedule can complete")
    pruned = ["conv1x1"] if prune_for == "latency" else list(SPARSE_KINDS)
    return stripped, {"target_sparsity": sparsity, "prune_for": prune_for, "per_layer_type": report, "pruned_kinds": pruned,
                      "pruned_kinds_sparsity": achieved, "schedule": schedule.__dict__, "batchnorm": batchnorm,
                      "distillation": distillation, "classifier_refit": refit,
                      "fine_tune": history}
