"""Classification metrics in plain numpy (shared by finetune, evaluate, compress and profile)."""

from __future__ import annotations

import numpy as np


def classification_report(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str],
                          *, top_k: int = 5) -> dict:
    """Accuracy, top-k, per-class precision/recall/F1 and the confusion matrix (rows: true, cols: predicted)."""
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    k = min(top_k, num_classes)
    top = np.argsort(-probabilities, axis=1)[:, :k]
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i, :].sum() if confusion[i, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                           "f1": round(float(f1), 4), "support": int(confusion[i, :].sum())}
    return {
        "count": int(len(labels)),
        "accuracy": float((predicted == labels).mean()) if len(labels) else 0.0,
        f"top{k}_accuracy": float((top == labels[:, None]).any(axis=1).mean()) if len(labels) else 0.0,
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])) if per_class else 0.0,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "labels": list(class_names),
    }


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """How closely a compressed model's outputs follow its parent's: top-1 agreement and max |diff|."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    return {
        "top1_agreement": float((reference.argmax(1) == candidate.argmax(1)).mean()),
        "max_abs_diff": float(np.max(np.abs(reference - candidate))),
        "mean_abs_diff": float(np.mean(np.abs(reference - candidate))),
    }


def check_outputs_sane(outputs: np.ndarray, *, what: str) -> None:
    """NaN/inf, or every input mapped to one class with identical scores, means a broken model."""
    from edgekit.errors import ValidationError

    outputs = np.asarray(outputs)
    if not np.all(np.isfinite(outputs)):
        raise ValidationError(f"{what} produced NaN or infinite outputs",
                              fix="check the training run (learning rate) or use another quantization mode")
    if len(outputs) > 1 and np.allclose(outputs, outputs[:1], atol=1e-7):
        raise ValidationError(f"{what} gives the same output for every input (collapsed)",
                              fix="use more calibration images or keep sensitive layers in float")


# --- Accuracy change of a compressed model against its float parent, with its uncertainty -----------------

Z_TWO_SIDED_95 = 1.959964  # standard normal quantile 0.975
Z_ONE_SIDED_95 = 1.644854  # standard normal quantile 0.95
INTERVAL_METHOD = "Bonett-Price adjusted Wald interval for a paired difference of proportions"


def _adjusted_paired_difference(parent_only: int, candidate_only: int, images: int) -> tuple[float, float]:
    """Centre and standard error of (parent right, candidate wrong) - (candidate right, parent wrong) rates.

    Bonett & Price (2012) add one pseudo-count to each discordant cell and two to n. This keeps the
    interval honest where the plain Wald interval collapses (no disagreements on a small set gives
    [0, 0] there, and a width that scales with the set size here), and Fagerland, Lydersen & Laake
    (Stat Med 2014, "Recommended tests and confidence intervals for paired binomial proportions")
    found its coverage close to nominal for all n; it needs no iteration or random numbers.
    """
    p12 = (parent_only + 1) / (images + 2)
    p21 = (candidate_only + 1) / (images + 2)
    centre = p12 - p21
    variance = max(p12 + p21 - centre ** 2, 0.0) / (images + 2)
    return centre, variance ** 0.5


def drop_upper_bound(parent_only: int, candidate_only: int, images: int, *, looks: int = 1,
                     at_images: int | None = None) -> float:
    """One-sided 95% upper bound of the top-1 drop, in points (what a certificate checks against its bound).

    ``looks`` > 1 widens it for that many looks at the same images of which any may be the one reported
    (Bonferroni: level 0.05 / looks), so a pass is not just a lucky draw. ``at_images`` predicts the
    bound another set of that size would give for the same drop and disagreement rates (the standard
    error scales as 1 / sqrt(images)): what the accuracy guard expects certification to need.
    """
    from statistics import NormalDist

    z = Z_ONE_SIDED_95 if looks <= 1 else NormalDist().inv_cdf(1 - 0.05 / looks)
    centre, error = _adjusted_paired_difference(parent_only, candidate_only, images)
    if at_images is not None:
        error *= ((images + 2) / (at_images + 2)) ** 0.5
    return round(min(centre + z * error, 1.0) * 100, 3)


def certifiable_floor(images: int, disagreements: int = 0) -> float:
    """The smallest bound ``images`` can certify when a model disagrees with its parent ``disagreements``
    times with no net loss (half the disagreements each way): the resolution of the set."""
    return drop_upper_bound(disagreements // 2, disagreements - disagreements // 2, images)


def accuracy_change(truth: np.ndarray, parent_outputs: np.ndarray, outputs: np.ndarray,
                    class_names: list[str], *, bound: float | None = None) -> dict:
    """How much top-1 a model lost against its parent on the same labelled images, and how sure that is.

    Positive drops are losses. Returns the number of images, both top-1s, the drop with its paired
    two-sided 95% interval and one-sided 95% upper bound (:func:`_adjusted_paired_difference`:
    a paired interval, because both models see the same images and only the images where exactly
    one of them is right carry information), top-1 agreement, the class whose recall fell most, the
    macro-F1 drop, and a warning when the set is too small to resolve ``bound`` (points).
    """
    truth = np.asarray(truth, dtype=np.int64)
    parent_pred = np.asarray(parent_outputs).argmax(1)
    pred = np.asarray(outputs).argmax(1)
    images = int(len(truth))
    parent_right, right = parent_pred == truth, pred == truth
    parent_only, candidate_only = int(np.sum(parent_right & ~right)), int(np.sum(right & ~parent_right))
    centre, error = _adjusted_paired_difference(parent_only, candidate_only, images)
    parent_report = classification_report(truth, parent_outputs, class_names)
    report = classification_report(truth, outputs, class_names)
    recall_drops = {name: round((parent_report["per_class"][name]["recall"] - report["per_class"][name]["recall"])
                                * 100, 2) for name in class_names if report["per_class"][name]["support"]}
    worst = max(recall_drops, key=recall_drops.get) if recall_drops else None
    change = {
        "images": images,
        "parent_top1": round(float(parent_right.mean()), 5) if images else None,
        "top1": round(float(right.mean()), 5) if images else None,
        "drop_points": round((parent_only - candidate_only) / max(images, 1) * 100, 3),
        "interval95_points": [round(max(centre - Z_TWO_SIDED_95 * error, -1.0) * 100, 3),
                              round(min(centre + Z_TWO_SIDED_95 * error, 1.0) * 100, 3)],
        "upper95_points": drop_upper_bound(parent_only, candidate_only, images),
        "interval_method": INTERVAL_METHOD,
        "top1_agreement": round(float(np.mean(parent_pred == pred)), 5) if images else None,
        "only_parent_right": parent_only, "only_model_right": candidate_only,
        "worst_class_recall_drop": None if worst is None else {
            "class": worst, "points": recall_drops[worst],
            "parent_recall": parent_report["per_class"][worst]["recall"],
            "recall": report["per_class"][worst]["recall"]},
        "macro_f1_drop_points": round((parent_report["macro_f1"] - report["macro_f1"]) * 100, 3),
        "warnings": [],
    }
    if bound is not None:
        floor = certifiable_floor(images, int(np.sum(parent_pred != pred)))
        if floor > bound:
            change["warnings"].append(
                f"{images} images cannot resolve a {bound:g}-point drop: with this model's "
                f"{int(np.sum(parent_pred != pred))} disagreements even no net loss bounds the drop only at "
                f"{floor:.2f} points (95%); use more labelled held-out images")
    return change


def describe_change(change: dict) -> str:
    """One line for terminals: drop with interval, n, agreement and the worst class (positive = loss)."""
    low, high = change["interval95_points"]
    text = (f"top-1 drop {change['drop_points']:+.2f} pt (95% CI {low:+.2f} to {high:+.2f}, "
            f"n={change['images']}), agreement {change['top1_agreement']:.3f}")
    worst = change.get("worst_class_recall_drop")
    if worst and worst["points"] > 0:
        text += f", worst class {worst['class']} recall -{worst['points']:.1f} pt"
    if change.get("source_is_training_data"):
        text += " [ON TRAINING IMAGES]"
    return text
