"""What every export target shares: finding the parent, refusing a bad --out, sample inputs, the parent check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.artifacts import Artifact, Preprocessing, check_output_dir, load_artifact
from edgekit.errors import OutputError, UsageError, ValidationError

FP32_ATOL = 1e-4  # max |diff| of probabilities allowed between a float export and its parent
QUANTIZED_MIN_AGREEMENT = 0.8  # top-1 agreement with the parent required of a quantized export
VALIDATION_SAMPLES = 200  # enough for agreement to mean something; ORT/LiteRT run it in seconds

if TYPE_CHECKING:
    from edgekit.importer import ImportOptions


def load_parent(model: Path, *, formats: tuple[str, ...], target: str, out_dir: Path,
                import_options: ImportOptions | None = None) -> Artifact:
    """The artifact to export from; it must be one of ``formats`` and carry labels + preprocessing.

    A model without a manifest (the user's own .keras/.h5/SavedModel/.onnx) is imported first into
    ``out_dir/imported`` (:func:`edgekit.importer.ensure_artifact`), unless it is an ONNX file that
    carries edgekit metadata inside. ONNX files are checked byte-wise first (empty, truncated, LFS
    pointer, wrong format, external data outside the folder).
    """
    from edgekit.importer import ensure_artifact, is_foreign

    path = Path(model).expanduser()
    if is_foreign(path) and not _has_embedded_onnx_metadata(path):
        parent = ensure_artifact(path, out_dir=out_dir, options=import_options)
    else:
        parent = load_artifact(path, require_manifest=False)
    fmt = parent.manifest.format
    if fmt not in formats:
        raise UsageError(f"{parent.path} is a {fmt} model; target {target!r} takes {' or '.join(formats)} models",
                         fix="pass a .keras/.h5 model, a SavedModel folder or an edgekit artifact folder")
    if fmt == "onnx":
        from edgekit.runtime.safety import check_model_file

        check_model_file(parent.path, "onnx")
        if not parent.manifest.labels:
            parent = _with_embedded_onnx_metadata(parent)
    if not parent.manifest.labels or not parent.manifest.preprocessing:
        raise UsageError(f"{parent.path} has no labels/preprocessing (no edgekit manifest beside it)",
                         fix="import it with `edgekit import` (or pass --labels/--preprocess), or pass an artifact folder")
    return parent


def _has_embedded_onnx_metadata(path: Path) -> bool:
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return False
    from edgekit.runtime.metadata import read_onnx_metadata
    from edgekit.runtime.safety import check_model_file

    check_model_file(path, "onnx")
    return read_onnx_metadata(path) is not None


def _with_embedded_onnx_metadata(parent: Artifact) -> Artifact:
    from edgekit.artifacts import Manifest
    from edgekit.runtime.metadata import read_onnx_metadata

    meta = read_onnx_metadata(parent.path) or {}
    manifest = Manifest(format="onnx", artifact=parent.path.name, stage="external",
                        labels=list(meta.get("labels", [])), preprocessing=dict(meta.get("preprocessing", {})))
    return Artifact(path=parent.path, manifest=manifest)


def check_out_dir(out_dir: Path, parent: Artifact) -> Path:
    """The resolved output folder; refuses the parent's own folder (its manifest would be overwritten)."""
    out_dir = check_output_dir(out_dir, inputs=(parent.path,))
    if out_dir == parent.directory.resolve():
        raise OutputError(f"output folder {out_dir} holds the input model {parent.path.name} and its manifest",
                          fix="pass a different --out folder so the parent is not overwritten")
    return out_dir


def sample_images(folder: Path, preprocessing: Preprocessing, count: int, seed: int) -> np.ndarray:
    """``count`` stratified, seeded images of ``folder`` as normalized float32 model inputs."""
    from edgekit.data import scan_image_folder

    return _load_sample(scan_image_folder(folder), preprocessing, count, seed)[0]


def _load_sample(folder, preprocessing: Preprocessing, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from edgekit.data import calibration_sample, load_images, normalize

    chosen = calibration_sample(folder, count, seed=seed)
    pixels = load_images(chosen.paths, preprocessing.size, resize_method=preprocessing.resize_method,
                         description=f"loading {len(chosen.paths)} images")
    return normalize(pixels, preprocessing), chosen.labels


def held_out_images(parent: Artifact):
    """Labelled images the parent was not trained on, as its finetune manifest records them, with where
    they come from: test/ or val/ beside (or inside) the training folder, else the finetune's seeded
    validation split (reproduced from its recorded seed and fraction). None when there are none."""
    from edgekit.data import find_split, load_splits, scan_image_folder

    recorded = parent.manifest.extra.get("data")
    labels = parent.manifest.labels
    if not recorded or not Path(recorded).is_dir():
        return None
    root = Path(recorded)
    base = root.parent if root.name == "train" else root
    for split in ("test", "val"):
        found = find_split(base, split)
        if found is not None and found.resolve() != root.resolve():
            return scan_image_folder(found, classes=labels), f"held-out images from {found}"
    if parent.manifest.extra.get("split") == "seeded split":
        options = parent.manifest.options
        splits = load_splits(root, validation_fraction=options.get("validation_fraction", 0.2),
                             seed=options.get("seed", 0))
        if splits.val.items and splits.val.classes == labels:
            return splits.val, f"the finetune's held-out validation split of {root}"
    return None


@dataclass(frozen=True)
class ValidationSet:
    """Inputs a converted model is checked on; ``labels`` is None for random pixels."""

    inputs: np.ndarray
    labels: np.ndarray | None
    source: str
    training_data: bool  # the parent was trained on these images: agreement/drop read optimistic


def validation_set(parent: Artifact, preprocessing: Preprocessing, extra_folder: Path | None = None, *,
                   seed: int = 0, count: int = VALIDATION_SAMPLES) -> ValidationSet:
    """Images to validate an export on: held-out ones when the parent's data has any, else training
    (or calibration) images labelled as such, else seeded random pixels."""
    from edgekit.data import find_split, normalize, scan_image_folder

    held_out = held_out_images(parent)
    if held_out is not None:
        folder, source = held_out
        inputs, labels = _load_sample(folder, preprocessing, count, seed + 1)
        return ValidationSet(inputs, labels, source, training_data=False)
    recorded = parent.manifest.extra.get("data")
    for root in ([Path(recorded)] if recorded else []) + ([extra_folder] if extra_folder else []):
        if root.is_dir():
            folder = scan_image_folder(find_split(root, "train") or root, classes=parent.manifest.labels or None)
            inputs, labels = _load_sample(folder, preprocessing, count, seed + 1)
            return ValidationSet(inputs, labels, f"TRAINING images from {root} (no held-out images)",
                                 training_data=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(count, *preprocessing.size, 3)).astype(np.uint8)
    return ValidationSet(normalize(pixels, preprocessing), None, "random images", training_data=False)


def compare_to_parent(reference: np.ndarray, candidate: np.ndarray, *, quantized: bool, what: str,
                      sample_source: str = "sample inputs", atol: float = FP32_ATOL,
                      min_agreement: float = QUANTIZED_MIN_AGREEMENT, training_data: bool = False) -> dict:
    """Max |diff| and top-1 agreement vs the parent; ValidationError (naming the numbers) if out of tolerance.

    Float exports must match within ``atol``; quantized ones must agree on top-1 for at least
    ``min_agreement`` of the samples (their |diff| is recorded, not bounded).
    """
    from edgekit.metrics import agreement, check_outputs_sane

    if reference.shape != candidate.shape:
        raise ValidationError(f"{what}: output shape {candidate.shape} differs from the parent's {reference.shape}",
                              fix="check that the parent is the model this file was exported from")
    if not np.allclose(reference, reference[:1], atol=1e-7) or not np.all(np.isfinite(candidate)):
        check_outputs_sane(candidate, what=what)  # a parent that is itself constant cannot collapse further
    numbers = agreement(reference, candidate) | {"samples": int(len(reference)), "sample_source": sample_source,
                                                  "training_data": training_data,
                                                  "atol": None if quantized else atol,
                                                  "min_top1_agreement": min_agreement if quantized else None}
    if quantized:
        failed = numbers["top1_agreement"] < min_agreement
        limit = f"top-1 agreement {numbers['top1_agreement']:.3f} < required {min_agreement}"
    else:
        failed = numbers["max_abs_diff"] > atol
        limit = f"max |diff| {numbers['max_abs_diff']:.3g} > atol {atol:g}"
    if failed:
        raise ValidationError(
            f"{what} disagrees with its parent on {numbers['samples']} {sample_source}: {limit} "
            f"(max |diff| {numbers['max_abs_diff']:.3g}, mean |diff| {numbers['mean_abs_diff']:.3g}, "
            f"top-1 agreement {numbers['top1_agreement']:.3f})",
            fix="compare against the right parent; for int8 use more or more representative --calibration images")
    return numbers


def labelled_accuracy(checks: ValidationSet, reference: np.ndarray, outputs: np.ndarray, labels: list[str]) -> dict:
    """``{"accuracy": change}`` (drop with interval, see :func:`edgekit.metrics.accuracy_change`) when the
    validation images are labelled, flagged when they are training images; else nothing."""
    from edgekit.metrics import accuracy_change

    if checks.labels is None:
        return {}
    change = accuracy_change(checks.labels, reference, outputs, labels)
    change.update(source=checks.source, source_is_training_data=checks.training_data)
    if checks.training_data:
        change["warnings"].append(f"measured on {checks.source}: the model was trained on them, so the drop "
                                  "and agreement read optimistic")
    return {"accuracy": change}
