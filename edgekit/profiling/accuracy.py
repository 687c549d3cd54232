"""Accuracy loss: a compressed/exported artifact against its float parent on the same labelled images.

The parent comes from the manifest (:func:`edgekit.artifacts.resolve_parent`). Both models are
evaluated through :func:`edgekit.evaluation.predict_pixels` (a .keras parent with TensorFlow
in-process; .tflite/.onnx with the light runtime on this machine's CPU), so accuracy is measured
once per model, not per device.
"""

from __future__ import annotations

from pathlib import Path

import dataclasses

from edgekit.artifacts import Artifact, load_artifact, resolve_parent
from edgekit.errors import ManifestError, UsageError


PARENT_HINT = "pass --parent PATH (the float model it came from) to compare; the top-1 above is absolute"


def _given_parent(path: Path, child: Artifact) -> Artifact:
    """``--parent PATH``: with its own manifest, or (a bare file) with the child's labels and preprocessing."""
    parent = load_artifact(Path(path), require_manifest=False)
    if parent.manifest.labels and parent.manifest.preprocessing:
        return parent
    return Artifact(path=parent.path, manifest=dataclasses.replace(
        parent.manifest, labels=list(child.manifest.labels), preprocessing=dict(child.manifest.preprocessing)))


def _parent_or_reason(artifact: Artifact) -> tuple[Artifact | None, str]:
    record = artifact.manifest.parent
    if not record or not record.get("path"):
        return None, f"{artifact.path} names no parent (not derived from another edgekit model); {PARENT_HINT}"
    try:
        parent = resolve_parent(artifact)
    except ManifestError as exc:
        return None, f"{exc.message}; {PARENT_HINT}"
    if parent is None:
        return None, f"parent {record['path']} (named in its manifest) is missing; {PARENT_HINT}"
    return parent, ""


def accuracy_loss(artifact: Artifact, data: Path, *, threads: int | None = None, strict: bool = False,
                  parent: Path | None = None, bound: float | None = None) -> dict:
    """Top-1/top-5 of the artifact and its parent (``parent``, else the manifest's), the drop in points
    with its paired 95% interval (``change``, see :func:`edgekit.metrics.accuracy_change`; ``bound``: a
    drop gate to warn about when the images cannot resolve it), top-1 agreement and both reports."""
    from edgekit.data import load_folder_arrays
    from edgekit.evaluation import labelled_folder, predict_pixels
    from edgekit.metrics import accuracy_change, classification_report

    labels = artifact.manifest.labels
    if not labels:
        raise UsageError(f"--data needs the model's labels, and {artifact.path} has no manifest with labels",
                         fix="profile the artifact folder written by edgekit (model + manifest.json)")
    folder = labelled_folder(Path(data), labels, strict=strict)
    pixels, truth = load_folder_arrays(folder, artifact.manifest.preprocessing_spec())
    probabilities = predict_pixels(artifact, pixels, threads=threads)
    model_report = classification_report(truth, probabilities, labels)
    result = {"data": str(Path(data).resolve()), "images": int(len(truth)), "model": model_report,
              "parent": None, "parent_path": None}
    parent, reason = (_given_parent(parent, artifact), "") if parent is not None else _parent_or_reason(artifact)
    if parent is None:
        result["parent_missing"] = reason
        return result
    if parent.manifest.preprocessing_spec() != artifact.manifest.preprocessing_spec():
        pixels, _ = load_folder_arrays(folder, parent.manifest.preprocessing_spec())
    parent_probabilities = predict_pixels(parent, pixels, threads=threads)
    parent_report = classification_report(truth, parent_probabilities, labels)
    top5 = next(k for k in model_report if k.startswith("top") and k.endswith("_accuracy"))
    change = accuracy_change(truth, parent_probabilities, probabilities, labels, bound=bound)
    if _is_training_folder(parent, Path(data)):
        change["source_is_training_data"] = True
        change["warnings"].append(f"{data} holds the images the parent was trained on: the drop reads optimistic")
    result.update({
        "parent": parent_report, "parent_path": str(parent.path),
        "accuracy_drop": change["drop_points"], "change": change,
        "top5_drop": round((parent_report[top5] - model_report[top5]) * 100, 3),
        "top1_agreement": change["top1_agreement"],
    })
    return result


def _is_training_folder(parent: Artifact, data: Path) -> bool:
    """Whether ``data`` is (or holds) the folder the parent's finetune manifest says it trained on."""
    recorded = parent.manifest.extra.get("data")
    if not recorded:
        return False
    trained, given = Path(recorded).resolve(), data.expanduser().resolve()
    return given == trained or given == trained / "train" or (trained.name == "train" and given == trained.parent)
