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
