"""The reference profile: what "no drift" looks like for one model, written beside it when it is made.

``reference_profile.json`` holds, per image, the same input statistics the on-device log records
(:mod:`edgekit.runtime.predlog`) computed on the training images, and the model's own signals
(confidence, margin, entropy) and predicted-class counts on held-out images it never trained on.
Raw per-image values (not histograms) are kept so any test or binning can be applied later; a
seeded sample caps their number.

Every stage that makes a runnable model calls :func:`write_reference_profile` (finetune, compress,
export; ``import`` can call it with its own folders). Derived models reuse their parent's input
statistics and held-out image list and only re-run the new model on those images.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifacts import (Artifact, Preprocessing, load_artifact, resolve_parent, sha256_file,
                               write_json_atomic)
from edgekit.data import (ImageFolder, calibration_sample, load_images, load_splits, scan_image_folder,
                          stratified_split)
from edgekit.errors import DataError, EdgekitError, ManifestError, UsageError
from edgekit.progress import status
from edgekit.runtime.predlog import (INPUT_FEATURES, SCORE_FEATURES, image_statistics, score_statistics,
                                     source_properties)

REFERENCE_FILE = "reference_profile.json"
REFERENCE_SCHEMA = "edgekit.reference/1"
MAX_INPUT_IMAGES = 1000
MAX_HELDOUT_IMAGES = 500
CHUNK = 64  # images decoded at a time (bounded memory for large folders)
VALUE_DIGITS = 6
DEFAULT_HELDOUT_FRACTION = 0.2  # finetune's default --val-fraction
RUNNABLE_FORMATS = ("keras", "h5", "tflite", "onnx")


def input_statistics(paths: list[Path], preprocessing: Preprocessing) -> dict[str, list[float]]:
    """The logged input statistics of image files, decoded and resized exactly as the runtime does."""
    values: dict[str, list[float]] = {name: [] for name in INPUT_FEATURES}
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start:start + CHUNK]
        pixels = load_images(chunk, preprocessing.size, resize_method=preprocessing.resize_method,
                             description="reference input statistics")
        for path, image in zip(chunk, pixels):
            for name, value in zip(INPUT_FEATURES, (*source_properties(path), *image_statistics(image))):
                values[name].append(round(float(value), VALUE_DIGITS) if value is not None else None)
    return values


def score_profile(probabilities: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Confidence, margin and entropy per held-out image, and how often each class was predicted."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    signals = score_statistics(probabilities)
    predicted = np.bincount(probabilities.argmax(axis=1), minlength=len(labels))
    return {"values": {name: np.round(signals[:, i], VALUE_DIGITS).tolist() for i, name in enumerate(SCORE_FEATURES)},
            "predicted_counts": {label: int(count) for label, count in zip(labels, predicted)}}


def write_reference_profile(artifact_dir: str | Path, *, train_data: str | Path | ImageFolder | None = None,
                            heldout_data: str | Path | ImageFolder | None = None,
                            heldout_probabilities: np.ndarray | None = None, seed: int = 0,
                            max_images: int = MAX_INPUT_IMAGES) -> Path | None:
    """Write ``reference_profile.json`` beside the artifact; None (and a note) when no images are known.

    ``train_data``: the images the model learned from (a folder, ``root/train``, or an ImageFolder);
    ``heldout_data``: images it never trained on (default: the validation split finetune holds out of
    ``train_data``). With neither, the parent's profile (or the finetune manifest's data) is reused.
    ``heldout_probabilities``: the model's outputs on ``heldout_data`` when the caller already has them.
    """
    artifact = load_artifact(Path(artifact_dir))
    if artifact.manifest.format not in RUNNABLE_FORMATS:
        status(f"reference profile: skipped for {artifact.path.name} ({artifact.manifest.format} cannot run here)")
        return None
    preprocessing = artifact.manifest.preprocessing_spec()
    labels = list(artifact.manifest.labels)
    inherited = _parent_profile(artifact, preprocessing) if train_data is None and heldout_data is None else None
    if inherited is not None:
        inputs, heldout_paths = inherited["input"], [Path(p) for p in inherited["scores"]["heldout_paths"]]
        heldout_source = inherited["scores"]["source"]
    else:
        folders = _folders(artifact, train_data, heldout_data, seed)
        if folders is None:
            status(f"reference profile: skipped for {artifact.path} (no training images known; "
                   "call write_reference_profile with train_data)")
            return None
        train, heldout = folders
        train = calibration_sample(train, max_images, seed=seed)
        if heldout_probabilities is None:  # given outputs belong to every held-out image, in order
            heldout = calibration_sample(heldout, MAX_HELDOUT_IMAGES, seed=seed)
        elif len(heldout_probabilities) != len(heldout.items):
            raise UsageError(f"{len(heldout_probabilities)} held-out outputs for {len(heldout.items)} held-out images",
                             fix="pass the model's outputs on heldout_data, in its order")
        inputs = {"source": str(train.root), "images": len(train.items),
                  "values": input_statistics(train.paths, preprocessing)}
        heldout_paths, heldout_source = heldout.paths, str(heldout.root)
    if heldout_probabilities is None:
        heldout_probabilities = _model_outputs(artifact, heldout_paths, preprocessing)
    profile = build_reference_profile(labels=labels, preprocessing=preprocessing, inputs=inputs,
                                      heldout_paths=heldout_paths, heldout_source=heldout_source,
                                      probabilities=heldout_probabilities, model_sha256=artifact.manifest.sha256,
                                      model_name=artifact.path.name)
    path = artifact.directory / REFERENCE_FILE
    write_json_atomic(path, profile)
    return path


def build_reference_profile(*, labels: list[str], preprocessing: Preprocessing, inputs: dict,
                            heldout_paths: list[Path], heldout_source: str, probabilities: np.ndarray | None,
                            model_sha256: str = "", model_name: str = "") -> dict[str, Any]:
    """The profile record; ``probabilities`` None gives an input-statistics-only profile (no model to run)."""
    profile = {"schema": REFERENCE_SCHEMA, "model_sha256": model_sha256, "model": model_name, "labels": list(labels),
               "preprocessing": preprocessing.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "input": inputs}
    if probabilities is not None:
        profile["scores"] = {"source": heldout_source, "images": len(heldout_paths),
                             "heldout_paths": [str(p) for p in heldout_paths], **score_profile(probabilities, labels)}
    return profile


def reference_from_images(folder: Path, *, model=None, preprocessing: Preprocessing | None = None,
                          seed: int = 0) -> dict[str, Any]:
    """A reference built on the fly from a folder of images like the training data (any layout).

    With ``model`` (a :class:`~edgekit.runtime.Predictor`) it also holds that model's scores on the
    images; without one, only input statistics.
    """
    from edgekit.data import IMAGE_SUFFIXES

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UsageError(f"--reference {folder} is not a folder", fix="pass a folder of images like the training data")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"--reference {folder} holds no images", fix="pass a folder of .jpg/.png images")
    rng = np.random.default_rng(seed)
    paths = [paths[i] for i in np.sort(rng.permutation(len(paths))[:MAX_INPUT_IMAGES])]
    preprocessing = model.preprocessing if model is not None else preprocessing
    inputs = {"source": str(folder), "images": len(paths), "values": input_statistics(paths, preprocessing)}
    heldout = paths[:MAX_HELDOUT_IMAGES]
    probabilities = None
    if model is not None:
        pixels = load_images(heldout, preprocessing.size, resize_method=preprocessing.resize_method,
                             description="reference scores")
        probabilities = np.concatenate([model.run_raw(model.preprocess(image)) for image in pixels])
    return build_reference_profile(labels=list(model.labels) if model is not None else [], preprocessing=preprocessing,
                                   inputs=inputs, heldout_paths=heldout, heldout_source=str(folder),
                                   probabilities=probabilities,
                                   model_sha256=(model.sha256 or sha256_file(model.path)) if model is not None else "",
                                   model_name=model.path.name if model is not None else "")


def _model_outputs(artifact: Artifact, paths: list[Path], preprocessing: Preprocessing) -> np.ndarray:
    from edgekit.evaluation import predict_pixels

    pixels = load_images(paths, preprocessing.size, resize_method=preprocessing.resize_method,
                         description="reference scores")
    return predict_pixels(artifact, pixels)


def _folder(data: str | Path | ImageFolder) -> ImageFolder:
    """Class names need not match the model's labels: the profile never uses the true classes."""
    return data if isinstance(data, ImageFolder) else scan_image_folder(Path(data))


def _folders(artifact: Artifact, train_data, heldout_data, seed: int) -> tuple[ImageFolder, ImageFolder] | None:
    """(training images, held-out images) from the arguments, else from the finetune manifest up the chain."""
    if train_data is not None:
        if heldout_data is not None:
            return _folder(train_data), _folder(heldout_data)
        if isinstance(train_data, ImageFolder):
            keep, held = stratified_split(train_data.labels, DEFAULT_HELDOUT_FRACTION, seed)
            return train_data.subset(keep), train_data.subset(held)
        splits = load_splits(Path(train_data), validation_fraction=DEFAULT_HELDOUT_FRACTION, seed=seed)
        return splits.train, splits.val
    origin = _finetune_ancestor(artifact)
    recorded = origin.manifest.extra.get("data") if origin else None
    if not recorded or not Path(recorded).is_dir():
        return None
    options = origin.manifest.options
    splits = load_splits(Path(recorded), validation_fraction=options.get("validation_fraction", 0.2),
                         seed=origin.manifest.seed or 0)
    return splits.train, (_folder(heldout_data) if heldout_data is not None else splits.val)


def _finetune_ancestor(artifact: Artifact) -> Artifact | None:
    current: Artifact | None = artifact
    while current is not None and current.manifest.stage != "finetune":
        try:
            current = resolve_parent(current)
        except EdgekitError:
            return None
    return current


def _parent_profile(artifact: Artifact, preprocessing: Preprocessing) -> dict | None:
    """The parent's reference profile when it was made for the same input size and labels."""
    try:
        parent = resolve_parent(artifact)
    except EdgekitError:
        return None
    if parent is None or not (parent.directory / REFERENCE_FILE).is_file():
        return None
    try:
        profile = load_reference_profile(parent.directory / REFERENCE_FILE)
    except EdgekitError:
        return None
    same = profile["preprocessing"] == preprocessing.to_dict() and profile["labels"] == list(artifact.manifest.labels)
    return profile if same and all(Path(p).is_file() for p in profile["scores"]["heldout_paths"]) else None


def load_reference_profile(path: str | Path) -> dict:
    """Read and check a reference profile (file, or the artifact folder holding one)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / REFERENCE_FILE
    elif not path.name.endswith(".json"):
        path = path.parent / REFERENCE_FILE
    if not path.is_file():
        raise ManifestError(f"no {REFERENCE_FILE} at {path.parent}",
                            fix="re-run the stage that made the model, or pass --reference DATA (an image folder)")
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not readable JSON: {exc}", fix="re-run the stage that made the model") from exc
    if not isinstance(profile, dict) or profile.get("schema") != REFERENCE_SCHEMA:
        raise ManifestError(f"{path} is not an edgekit reference profile (schema {REFERENCE_SCHEMA!r} expected)",
                            fix="pass the reference_profile.json written beside an edgekit model")
    return profile
