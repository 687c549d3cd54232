"""The typed manifest: what later stages read back (training folders, tfmot wrapping, quantization) is a
typed field, and manifests users already have (layout 1: all of it in ``extra``) still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.artifacts import (MANIFEST_NAME, MANIFEST_SCHEMA, Manifest, Quantization, TrainingData, load_artifact,
                               write_artifact)
from edgekit.data import recorded_training_images
from edgekit.errors import ManifestError

V1 = Path(__file__).parent / "data" / "manifests-v1"


def _old_artifact(tmp_path: Path, fixture: str, **changes) -> Path:
    """A folder holding a layout-1 manifest (from tests/data, with ``changes`` applied) and its model file."""
    data = json.loads((V1 / fixture).read_text()) | changes
    assert data["schema"] == "edgekit.manifest/1"
    folder = tmp_path / fixture.removesuffix(".json")
    folder.mkdir()
    (folder / data["artifact"]).write_bytes(b"model bytes")
    (folder / MANIFEST_NAME).write_text(json.dumps(data))
    return folder


def test_a_layout_1_finetune_manifest_loads_with_typed_training_fields(tmp_path):
    old = json.loads((V1 / "finetune.json").read_text())
    artifact = load_artifact(_old_artifact(tmp_path, "finetune.json"), verify_hash=False)
    manifest = artifact.manifest
    assert manifest.schema == MANIFEST_SCHEMA
    assert manifest.training == TrainingData(folder=old["extra"]["data"], split="seeded split")
    assert manifest.tfmot_wrap == "whole" and manifest.quantization is None
    # The reports stay where they were; the keys stages read back left ``extra``.
    assert manifest.extra["history"] == old["extra"]["history"]
    assert not {"data", "split", "tfmot_wrap"} & set(manifest.extra)
    assert manifest.labels == old["labels"] and manifest.sha256 == old["sha256"]


def test_a_layout_1_onnx_export_keeps_its_quantization_settings(tmp_path):
    old = json.loads((V1 / "export-onnx-int8.json").read_text())["extra"]["quantization"]
    manifest = load_artifact(_old_artifact(tmp_path, "export-onnx-int8.json"), verify_hash=False).manifest
    assert manifest.quantization == Quantization(**old)
    assert manifest.quantization.mode == "static-qdq" and manifest.quantization.float_nodes == old["float_nodes"]
    assert manifest.extra == {"opset": 17, "parent_format": "keras"}


def test_a_layout_1_import_keeps_its_training_and_held_out_folders(tmp_path):
    old = json.loads((V1 / "import.json").read_text())["extra"]
    manifest = load_artifact(_old_artifact(tmp_path, "import.json"), verify_hash=False).manifest
    assert manifest.training == TrainingData(folder=old["data"], eval_folder=old["eval_data"])
    assert manifest.extra["source"] == old["source"]


def test_a_layout_1_compress_variant_has_no_training_record(tmp_path):
    manifest = load_artifact(_old_artifact(tmp_path, "compress-int8.json"), verify_hash=False).manifest
    assert manifest.training == TrainingData() and manifest.tfmot_wrap is None and manifest.quantization is None


def test_stages_find_the_training_images_an_old_manifest_records(tmp_path):
    """The one resolver compress and the exports use: the recorded folder's train/ split when it has one."""
    photos = tmp_path / "photos"
    (photos / "train" / "cat").mkdir(parents=True)
    old = json.loads((V1 / "finetune.json").read_text())
    folder = _old_artifact(tmp_path, "finetune.json", extra=old["extra"] | {"data": str(photos)})
    assert recorded_training_images(load_artifact(folder, verify_hash=False).manifest) == photos / "train"
    (tmp_path / "moved").mkdir()
    moved = _old_artifact(tmp_path / "moved", "finetune.json", extra=old["extra"] | {"data": str(tmp_path / "gone")})
    assert recorded_training_images(load_artifact(moved, verify_hash=False).manifest) is None


def test_the_typed_fields_round_trip_through_manifest_json(tmp_path):
    manifest = Manifest(format="onnx", artifact="", stage="export", training=TrainingData(folder="/data/train"),
                        tfmot_wrap="selective",
                        quantization=Quantization(mode="static-qdq", calibration_images=3, float_nodes=["Softmax"]))
    written = write_artifact(tmp_path / "out", "model.onnx", manifest, writer=lambda tmp: tmp.write_bytes(b"x"))
    on_disk = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert on_disk["schema"] == MANIFEST_SCHEMA == "edgekit.manifest/2"
    assert on_disk["quantization"]["float_nodes"] == ["Softmax"] and on_disk["training"]["folder"] == "/data/train"
    assert load_artifact(written.path).manifest == written.manifest


@pytest.mark.parametrize("schema", ["edgekit.manifest/3", None])
def test_an_unknown_schema_is_still_refused(tmp_path, schema):
    data = json.loads((V1 / "compress-int8.json").read_text()) | {"schema": schema}
    with pytest.raises(ManifestError, match="not an edgekit manifest"):
        Manifest.from_dict(data, where=tmp_path / MANIFEST_NAME)
