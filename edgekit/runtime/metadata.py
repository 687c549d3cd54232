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
    """Return a copy of a .tflite flatbuffer with ``meta`` stored under the ``"edgekit"`` metadata entry.

    Replaces an existing edgekit entry (its old buffer is emptied, indices stay valid). Refuses models
    whose weights live outside the flatbuffer (>2 GiB layout), which the object API would drop.
    """
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    except Exception as exc:  # malformed flatbuffers raise anything from IndexError to struct.error
        raise ModelFileError(f"cannot parse the TFLite flatbuffer to embed metadata: {exc}",
                             fix="check that the file is a complete .tflite model") from exc
    buffers = model.buffers or []
    if any((b.offset or 0) > 1 for b in buffers):
        raise ModelFileError("this .tflite keeps its weights outside the flatbuffer (>2 GiB layout)",
                             fix="keep the model below 2 GiB to embed edgekit metadata")
    payload = schema.BufferT()
    payload.data = np.frombuffer(_encode(meta), dtype=np.uint8)
    entries = [m for m in (model.metadata or [])]
    existing = [m for m in entries if _name(m.name) == METADATA_KEY]
    if existing:
        buffers[existing[0].buffer] = payload
        for extra in existing[1:]:
            entries.remove(extra)
    else:
        buffers.append(payload)
        entry = schema.MetadataT()
        entry.name = METADATA_KEY
        entry.buffer = len(buffers) - 1
        entries.append(entry)
    model.buffers = buffers
    model.metadata = entries
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(raw: bytes | str | None) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")


def read_tflite_metadata(model_bytes: bytes) -> dict[str, Any] | None:
    """The edgekit payload of a .tflite flatbuffer, or None when it has none. Pure Python: no native parser."""
    from edgekit.runtime import tflite_schema as schema

    try:
        model = schema.Model.GetRootAs(model_bytes, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if _name(entry.Name()) == METADATA_KEY:
                buffer = model.Buffers(entry.Buffer())
                return _decode(buffer.DataAsNumpy().tobytes(), "the .tflite model")
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"cannot read the TFLite metadata: {exc}",
                             fix="check that the file is a complete .tflite model") from exc
    return None


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
