"""The registry's ``tflite`` target: a plain float32 .tflite from a Keras artifact, validated and with manifest.

The conversion itself is shared with the compress stage (:func:`edgekit.targets.tflite_converter.convert_keras_to_tflite`:
static batch 1, child process); quantized TFLite variants come from ``edgekit compress``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.artifacts import Artifact, Manifest, library_versions, parent_record, write_artifact
from edgekit.progress import status
from edgekit.targets.common import check_out_dir, compare_to_parent, load_parent, validation_set

if TYPE_CHECKING:
    from edgekit.importer import ImportOptions

MODEL_FILE = "model.tflite"


def export_tflite(model: Path, *, out_dir: Path, seed: int = 0, trust: bool = False,
                        import_options: ImportOptions | None = None) -> Artifact:
    """Write ``out_dir/model.tflite`` (float32, labels + preprocessing embedded) + manifest; raise if it disagrees."""
    import numpy as np

    from edgekit.keras_io import load_float_model
    from edgekit.targets.tflite_converter import convert_keras_to_tflite, embed_metadata, run_tflite, tensor_specs

    parent = load_parent(model, formats=("keras", "savedmodel"), target="tflite", out_dir=out_dir,
                         import_options=import_options)
    out_dir = check_out_dir(out_dir, parent)
    preprocessing = parent.manifest.preprocessing_spec()
    checks = validation_set(parent, preprocessing, seed=seed)
    samples, sample_source = checks.inputs, checks.source
    keras_model = load_float_model(parent.path, trust=trust)
    reference = np.asarray(keras_model.predict(samples, batch_size=16, verbose=0))
    data = convert_keras_to_tflite(keras_model, mode="float32", what=str(parent.path))
    data = embed_metadata(data, labels=parent.manifest.labels, preprocessing=parent.manifest.preprocessing)
    validation = compare_to_parent(reference, run_tflite(data, samples), quantized=False,
                                   what=f"{MODEL_FILE} exported from {parent.path}", sample_source=sample_source,
                                   training_data=checks.training_data)
    input_spec, output_spec = tensor_specs(data)
    manifest = Manifest(
        format="tflite", artifact=MODEL_FILE, stage="export", labels=list(parent.manifest.labels),
        preprocessing=preprocessing.to_dict(), input=input_spec,
        output=output_spec | {"activation": parent.manifest.output.get("activation", "softmax")},
        parent=parent_record(parent, out_dir), backbone=parent.manifest.backbone,
        options={"target": "tflite", "mode": "float32"}, seed=seed, metrics={"validation": validation},
        extra={"parent_format": parent.manifest.format},
        versions=library_versions("tensorflow", "tf-keras", "ai-edge-litert", "numpy"))
    artifact = write_artifact(out_dir, MODEL_FILE, manifest, writer=lambda tmp: tmp.write_bytes(data))
    return artifact
