"""Evaluate any edgekit artifact (.keras with TensorFlow; .tflite/.onnx with the light runtime) on a labelled folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.artifacts import MANIFEST_NAME, Artifact, Preprocessing, load_artifact, write_json_atomic
from edgekit.data import ImageFolder, load_folder_arrays, normalize, scan_image_folder
from edgekit.errors import DataError, ManifestError
from edgekit.progress import track


def keras_outputs(model, pixels: np.ndarray, preprocessing: Preprocessing, *, batch_size: int = 64,
                  description: str = "evaluating (Keras)") -> np.ndarray:
    """A Keras model's outputs for uint8 pixels, normalised and run batch by batch (inference mode)."""
    outputs = []
    starts = range(0, len(pixels), batch_size)
    for start in track(starts, description=description, total=len(starts)):
        outputs.append(np.asarray(model(normalize(pixels[start:start + batch_size], preprocessing), training=False)))
    return np.concatenate(outputs) if outputs else np.zeros((0,) + tuple(model.output_shape[1:]), np.float32)


def predict_pixels(artifact: Artifact, pixels: np.ndarray, *, batch_size: int = 32, threads: int | None = None,
                   trust: bool = False) -> np.ndarray:
    """Class probabilities for uint8 pixels already at the model's input size."""
    preprocessing = artifact.manifest.preprocessing_spec()
    if artifact.manifest.format in ("keras", "h5", "savedmodel"):
        from edgekit.keras_io import load_float_model

        return keras_outputs(load_float_model(artifact.path, trust=trust), pixels, preprocessing, batch_size=batch_size)
    from edgekit.runtime import Predictor

    predictor = Predictor(artifact.path, threads=threads, labels=artifact.manifest.labels or None,
                          preprocessing=artifact.manifest.preprocessing or None)
    rows = []
    for image in track(pixels, description=f"evaluating ({artifact.path.suffix})", total=len(pixels)):
        model_input = predictor.preprocess(image)
        rows.append(predictor.run_raw(model_input if model_input.ndim == 4 else model_input[None])[0])
    return np.stack(rows) if rows else np.zeros((0, len(artifact.manifest.labels)))


def embedded_metadata(artifact: Artifact) -> dict | None:
    """The labels/preprocessing edgekit embeds in a .tflite/.onnx file, or None (other formats, foreign files)."""
    from edgekit.runtime.metadata import read_onnx_metadata, read_tflite_metadata

    readers = {"tflite": lambda: read_tflite_metadata(artifact.path.read_bytes()),
               "onnx": lambda: read_onnx_metadata(artifact.path)}
    fmt = artifact.manifest.format
    return readers[fmt]() if fmt in readers else None


def with_labels(artifact: Artifact) -> Artifact | None:
    """The artifact with labels and preprocessing from its manifest, else from the metadata edgekit embeds in the
    model file (a bare .tflite/.onnx copied to a device, as ``edgekit predict`` reads it); None when neither has
    them."""
    import dataclasses

    manifest = artifact.manifest
    if manifest.labels and manifest.preprocessing:
        return artifact
    embedded = embedded_metadata(artifact)
    if not embedded or not embedded.get("labels") or not embedded.get("preprocessing"):
        return None
    return Artifact(path=artifact.path, manifest=dataclasses.replace(
        manifest, labels=list(embedded["labels"]), preprocessing=dict(embedded["preprocessing"])))


def load_labelled_artifact(model: Path) -> Artifact:
    """The artifact at ``model`` with labels and preprocessing (:func:`with_labels`), else a ManifestError."""
    artifact = load_artifact(model, require_manifest=False)
    labelled = with_labels(artifact)
    if labelled is None:
        raise ManifestError(f"no labels/preprocessing for {artifact.path}: no {MANIFEST_NAME} beside it and none "
                            "embedded in the file", fix="pass the artifact folder written by edgekit, a "
                                                        ".tflite/.onnx exported by edgekit (it embeds them), or "
                                                        "--labels and --preprocess for a model of your own")
    return labelled


def labelled_folder(data: Path, labels: list[str], *, strict: bool = False) -> ImageFolder:
    """The labelled images to evaluate on; the folder's classes must be among the model's labels."""
    folder = scan_image_folder(data, strict=strict, classes=labels)
    if not folder.items:
        raise DataError(f"{data} has no images of the model's classes", fix=f"use folders named {', '.join(labels)}")
    return folder


def evaluate(*, model: Path, data: Path, out_dir: Path | None = None, top_k: int = 5, threads: int | None = None,
             trust: bool = False, strict: bool = False) -> dict:
    """Accuracy, top-k, per-class P/R/F1 and the confusion matrix; JSON + PNG into ``out_dir`` when given."""
    from edgekit.metrics import classification_report
    from edgekit.plots import confusion_matrix_png

    artifact = load_labelled_artifact(model)
    labels = artifact.manifest.labels
    folder = labelled_folder(data, labels, strict=strict)
    preprocessing: Preprocessing = artifact.manifest.preprocessing_spec()
    pixels, truth = load_folder_arrays(folder, preprocessing)
    probabilities = predict_pixels(artifact, pixels, threads=threads, trust=trust)
    report = classification_report(truth, probabilities, labels, top_k=top_k)
    report["model"] = str(artifact.path)
    report["data"] = str(Path(data).resolve())
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json_atomic(out_dir / "evaluation.json", report)
        confusion_matrix_png(report["confusion_matrix"], labels, out_dir / "confusion_matrix.png",
                             title=f"{artifact.path.name} on {Path(data).name} (accuracy {report['accuracy']:.3f})")
    return report
