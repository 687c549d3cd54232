"""edgekit metadata embedded in model files, so a bare .tflite/.onnx still knows its labels and preprocessing.

The payload is one UTF-8 JSON object::

    {"labels": [...], "preprocessing": Preprocessing.to_dict(), "edgekit_version": "..."}

- TFLite: an entry named ``"edgekit"`` in the flatbuffer's ``Model.metadata`` list, pointing at a
  buffer that holds the JSON (an existing entry is replaced, not duplicated).
- ONNX: ``metadata_props`` key ``"edgekit"``.

Stable API used by the compress (TFLite writer) and targets (ONNX writer) stages:
:func:`make_metadata`, :func:`embed_tflite_metadata`, :func:`embed_onnx_metadata`; readers:
:func:`read_tflite_metadata`, :func:`read_onnx_metadata`. Nothing here imports TensorFlow or ``onnx``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.errors import ModelFileError

METADATA_KEY = "edgekit"


def make_metadata(labels: list[str], preprocessing: dict[str, Any]) -> dict[str, Any]:
    """The payload every writer embeds; ``preprocessing`` is ``Preprocessing.to_dict()``."""
    return {"labels": list(labels), "preprocessing": dict(preprocessing), "edgekit_version": __version__}


def _encode(meta: dict[str, Any]) -> bytes:
    if not isinstance(meta, dict):
        raise TypeError(f"metadata must be a dict, not {type(meta).__name__}")
    return json.dumps(meta, sort_keys=True).encode("utf-8")


def _decode(raw: bytes | str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"the edgekit metadata in {where} is not valid JSON: {exc}",
                             fix="re-export the model with edgekit") from exc
    if not isinstance(data, dict):
        raise ModelFileError(f"the edgekit metadata in {where} is not a JSON object",
                             fix="re-export the model with edgekit")
    return data


def embed_tflite_metadata(model_bytes: bytes, meta: dict[str, Any]) -> bytes:
    """Return a copy of a .tflite flatbuffer with ``meta`` stored under the ``"edgekit"`` metadata entry
    (an existing one is replaced; see :func:`edgekit.runtime.tflite_file.with_metadata_buffer`)."""
    from edgekit.runtime.tflite_file import with_metadata_buffer

    return with_metadata_buffer(model_bytes, METADATA_KEY, _encode(meta))


def read_tflite_metadata(model_bytes: bytes) -> dict[str, Any] | None:
    """The edgekit payload of a .tflite flatbuffer, or None when it has none. Pure Python: no native parser."""
    from edgekit.runtime.tflite_file import metadata_buffer

    raw = metadata_buffer(model_bytes, METADATA_KEY)
    return None if raw is None else _decode(raw, "the .tflite model")


def embed_onnx_metadata(model_proto, meta: dict[str, Any]):
    """Store ``meta`` under ``metadata_props["edgekit"]`` of an ``onnx.ModelProto`` (in place); returns it."""
    text = _encode(meta).decode("utf-8")
    for prop in model_proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = text
            return model_proto
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text
    return model_proto


def read_onnx_metadata(path: str | Path) -> dict[str, Any] | None:
    """The edgekit payload of an .onnx file, or None. Reads the protobuf fields directly (no onnx/onnxruntime)."""
    from edgekit.runtime.safety import onnx_metadata_props

    props = onnx_metadata_props(Path(path))
    return _decode(props[METADATA_KEY], str(path)) if METADATA_KEY in props else None


def metadata_from_map(props: dict[str, str], where: str) -> dict[str, Any] | None:
    """The edgekit payload from an already-loaded ``custom_metadata_map`` (onnxruntime)."""
    return _decode(props[METADATA_KEY], where) if METADATA_KEY in props else None
