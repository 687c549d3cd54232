"""The one place edgekit reads (and rewrites) the .tflite flatbuffer, without TensorFlow or an interpreter.

- :func:`check_structure`: walks every table before a native parser sees the bytes (a garbled file
  raises here, not as a segfault in C++);
- :func:`io_tensors`: the input/output tensors (shape, dtype, quantization) the runtime and the
  importer need; :func:`numpy_dtype` is the one TensorType -> numpy map;
- :func:`metadata_buffer` / :func:`with_metadata_buffer`: named metadata entries (edgekit's labels);
- :func:`parse_tflite` (:func:`edgekit.runtime.safety.read_tflite` checks the file first): the whole
  graph as records for target checks (Edge TPU compatibility, op counts, parameter sizes):
  operators in execution order with builtin name, version and options, tensors with dtype, shape,
  ``shape_signature`` (-1 = dynamic), quantization and which are constants.

The light readers use edgekit's vendored schema subset (:mod:`edgekit.runtime.tflite_schema`), so the
runtime works where only tflite-runtime is installed; the whole-graph parser and the writer need
``ai_edge_litert.schema_py_generated`` (op names, option tables, the object API). The timing
runner (``runner.py``: copied to devices, imports nothing from edgekit) keeps its own small reader; a test checks
that the two agree.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from edgekit.errors import ModelFileError

FILE_IDENTIFIER = b"TFL3"
CORRUPT_FIX = "re-export or re-download the model"


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    dtype: str  # TensorType enum name: FLOAT32, INT8, UINT8, INT32, ...
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # equals ``shape`` unless some dims are dynamic (-1)
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int
    buffer_size: int  # bytes of constant data (0 for activations and inputs)
    int_values: tuple[int, ...] | None = None  # small INT32/INT64 constants (axes, paddings, strides)
    is_variable: bool = False  # state kept between invocations (an LSTM's cell and output state)
    buffer: int = 0  # index of its constant data in the model's buffers (0: none)

    @property
    def is_constant(self) -> bool:
        return self.buffer_size > 0

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)


@dataclass(frozen=True)
class OperatorInfo:
    index: int  # position in execution order
    op: str  # builtin name (CONV_2D, ...) or "CUSTOM"
    custom_code: str | None
    version: int
    builtin_code: int
    fused_activation: str  # NONE, RELU, RELU6, ... or "" when the op has no such option
    inputs: tuple[int, ...]  # tensor indices; -1 marks an omitted optional input
    outputs: tuple[int, ...]
    # Scalar fields of the builtin options (align_corners, dilation_h_factor, axis, ...), keyed as the
    # schema's object API names them; per-op limits of the Edge TPU depend on them.
    options: dict[str, int | float | bool] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class SubgraphInfo:
    name: str
    tensors: tuple[TensorInfo, ...]
    operators: tuple[OperatorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TfliteGraph:
    """Everything target checks need from a .tflite file; ``subgraphs[0]`` is the main graph."""

    path: str
    size_bytes: int
    schema_version: int
    description: str
    subgraphs: tuple[SubgraphInfo, ...]
    metadata: tuple[str, ...] = field(default_factory=tuple)

    @property
    def main(self) -> SubgraphInfo:
        return self.subgraphs[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _text(raw: bytes | str | None) -> str:
    """A flatbuffer string (bytes from the readers, str or bytes from the object API) as text."""
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else (raw or "")


def _ints(table, name: str) -> tuple[int, ...]:
    """A flatbuffer int vector as a tuple (checked for absence first: ``...AsNumpy`` returns 0 then)."""
    if getattr(table, f"{name}IsNone")():
        return ()
    return tuple(int(v) for v in getattr(table, f"{name}AsNumpy")())


def _floats(table, name: str) -> tuple[float, ...]:
    if getattr(table, f"{name}IsNone")():
        return ()
    return tuple(getattr(table, f"{name}AsNumpy")().tolist())


def _buffer_sizes(model) -> list[int]:
    """Bytes of each buffer: inline data, or ``size`` for data stored after the flatbuffer (>2 GB models)."""
    sizes = []
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        inline = 0 if buf.DataIsNone() else buf.DataLength()
        sizes.append(inline or (int(buf.Size()) if buf.Offset() > 1 else 0))
    return sizes


_SMALL_INT_DTYPES = {"INT32": "<i4", "INT64": "<i8"}
_SMALL_INT_LIMIT = 64


def _small_ints(model, buffer_index: int, dtype: str) -> tuple[int, ...] | None:
    """Values of a small constant int tensor: per-op limits depend on axes, paddings and strides."""
    import numpy as np

    if dtype not in _SMALL_INT_DTYPES:
        return None
    buf = model.Buffers(buffer_index)
    if buf.DataIsNone() or buf.DataLength() > _SMALL_INT_LIMIT * 8:
        return None
    return tuple(int(v) for v in np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=_SMALL_INT_DTYPES[dtype]))


def _read_tensor(schema, model, sub, index: int, buffer_sizes: list[int]) -> TensorInfo:
    t = sub.Tensors(index)
    shape = _ints(t, "Shape")
    signature = _ints(t, "ShapeSignature") or shape
    quant = t.Quantization()
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    qdim = 0
    if quant is not None:
        scale, zero_point, qdim = _floats(quant, "Scale"), _ints(quant, "ZeroPoint"), int(quant.QuantizedDimension())
    buffer_index = int(t.Buffer())
    if not 0 <= buffer_index < max(len(buffer_sizes), 1):
        raise ValueError(f"tensor {index} points at buffer {buffer_index} of {len(buffer_sizes)}")
    dtype = _enum_names(schema.TensorType).get(t.Type(), f"TYPE_{t.Type()}")
    size = buffer_sizes[buffer_index] if buffer_sizes else 0
    return TensorInfo(
        index=index, name=_text(t.Name()), dtype=dtype, shape=shape, shape_signature=signature,
        scale=scale, zero_point=zero_point, quantized_dimension=qdim, buffer_size=size,
        int_values=_small_ints(model, buffer_index, dtype) if size else None,
        is_variable=bool(t.IsVariable()), buffer=buffer_index,
    )


def _builtin_options(schema, op) -> dict[str, int | float | bool]:
    """The scalar fields of an operator's builtin options, read with the schema's object API."""
    table = op.BuiltinOptions()
    name = _enum_names(schema.BuiltinOptions).get(op.BuiltinOptionsType())
    options_cls = getattr(schema, f"{name}T", None) if name and table is not None else None
    if options_cls is None:
        return {}
    options = options_cls.InitFromBuf(table.Bytes, table.Pos)
    return {key: value for key, value in vars(options).items() if isinstance(value, int | float | bool)}


def _fused_activation(schema, options: dict[str, int | float | bool]) -> str:
    """The ``fusedActivationFunction`` of an operator's builtin options, or "" if it has none."""
    if "fusedActivationFunction" not in options:
        return ""
    return _enum_names(schema.ActivationFunctionType).get(int(options["fusedActivationFunction"]), "UNKNOWN")


def _read_subgraph(schema, model, sub, opcodes: list[tuple[str, str | None, int, int]],
                   buffer_sizes: list[int]) -> SubgraphInfo:
    tensors = tuple(_read_tensor(schema, model, sub, i, buffer_sizes) for i in range(sub.TensorsLength()))
    n_tensors = len(tensors)
    operators = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        name, custom, version, code = opcodes[op.OpcodeIndex()]
        inputs, outputs = _ints(op, "Inputs"), _ints(op, "Outputs")
        if any(not -1 <= t < n_tensors for t in inputs + outputs):
            raise ValueError(f"operator {i} ({name}) names a tensor outside 0..{n_tensors - 1}")
        options = _builtin_options(schema, op)
        operators.append(OperatorInfo(index=i, op=name, custom_code=custom, version=version,
                                      builtin_code=code, fused_activation=_fused_activation(schema, options),
                                      inputs=inputs, outputs=outputs, options=options))
    return SubgraphInfo(name=_text(sub.Name()), tensors=tensors, operators=tuple(operators),
                        inputs=_ints(sub, "Inputs"), outputs=_ints(sub, "Outputs"))


def _opcodes(schema, model) -> list[tuple[str, str | None, int, int]]:
    names = _enum_names(schema.BuiltinOperator)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        # Files written before schema v3a only fill the int8 ``deprecated_builtin_code``.
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        custom = _text(oc.CustomCode()) or None
        codes.append((names.get(code, f"BUILTIN_{code}"), custom, int(oc.Version()) or 1, code))
    return codes


def parse_tflite(data: bytes, *, path: str = "<bytes>") -> TfliteGraph:
    """Parse .tflite bytes; any structural problem becomes :class:`ModelFileError` naming ``path``."""
    import ai_edge_litert.schema_py_generated as schema

    fix = "re-export the model (the file is truncated, corrupt or not a TFLite flatbuffer)"
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelFileError(f"{path} is not a TFLite model (no 'TFL3' file identifier)", fix=fix)
    try:
        model = schema.Model.GetRootAs(data, 0)
        buffer_sizes = _buffer_sizes(model)
        opcodes = _opcodes(schema, model)
        subgraphs = tuple(_read_subgraph(schema, model, model.Subgraphs(i), opcodes, buffer_sizes)
                          for i in range(model.SubgraphsLength()))
        metadata = tuple(_text(model.Metadata(i).Name()) for i in range(model.MetadataLength()))
        graph = TfliteGraph(path=path, size_bytes=len(data), schema_version=int(model.Version()),
                            description=_text(model.Description()), subgraphs=subgraphs, metadata=metadata)
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, MemoryError, RecursionError) as exc:
        raise ModelFileError(f"{path} is a corrupt TFLite flatbuffer: {exc}", fix=fix) from exc
    if not subgraphs:
        raise ModelFileError(f"{path} holds no subgraph", fix=fix)
    return graph


def buffer_view(data: bytearray, buffer_index: int, dtype):
    """Constant buffer ``buffer_index`` of the .tflite in ``data`` as a numpy view: writing it edits the model
    in place (same size, same layout), e.g. a bias correction."""
    import ai_edge_litert.schema_py_generated as schema

    return schema.Model.GetRootAs(data, 0).Buffers(buffer_index).DataAsNumpy().view(dtype)


def numpy_dtype(tensor_type: str):
    """The numpy dtype of a TensorType name (FLOAT32 -> float32, INT8 -> int8, ...)."""
    import numpy as np

    return np.dtype(tensor_type.lower())


def io_tensors(data) -> tuple[TensorInfo, TensorInfo]:
    """Subgraph 0's first input and first output tensor (read with the vendored schema subset)."""
    from edgekit.runtime import tflite_schema as schema

    model = schema.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    sizes = _buffer_sizes(model)
    return (_read_tensor(schema, model, graph, graph.Inputs(0), sizes),
            _read_tensor(schema, model, graph, graph.Outputs(0), sizes))


def check_structure(buf, *, path: Path | str) -> None:
    """Walk the flatbuffer tables in pure Python: a truncated or garbled file raises ModelFileError here."""
    from edgekit.runtime import tflite_schema as schema

    size = len(buf)
    try:
        model = schema.Model.GetRootAs(buf, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraphs")
        for i in range(model.BuffersLength()):
            buffer = model.Buffers(i)
            offset, length = buffer.Offset(), buffer.Size()
            if offset > 1 and offset + length > size:
                raise ValueError(f"buffer {i} points past the end of the file")
            buffer.DataLength()
        for i in range(model.OperatorCodesLength()):
            model.OperatorCodes(i).BuiltinCode()
        for s in range(model.SubgraphsLength()):
            graph = model.Subgraphs(s)
            for t in range(graph.TensorsLength()):
                tensor = graph.Tensors(t)
                if tensor.Buffer() >= max(model.BuffersLength(), 1):
                    raise ValueError(f"tensor {t} names buffer {tensor.Buffer()} of {model.BuffersLength()}")
                tensor.ShapeAsNumpy()
            for o in range(graph.OperatorsLength()):
                op = graph.Operators(o)
                if op.OpcodeIndex() >= model.OperatorCodesLength():
                    raise ValueError(f"operator {o} uses an unknown opcode")
                for index in (*op.InputsAsNumpy().tolist(), *op.OutputsAsNumpy().tolist()):
                    if not -1 <= index < graph.TensorsLength():
                        raise ValueError(f"operator {o} names tensor {index} of {graph.TensorsLength()}")
    except Exception as exc:  # the generated readers raise IndexError/struct.error/... on bad offsets
        raise ModelFileError(f"{path} is a truncated or corrupt .tflite flatbuffer ({type(exc).__name__}: {exc})",
                             fix=CORRUPT_FIX) from exc


def metadata_buffer(data, name: str) -> bytes | None:
    """The bytes of the metadata entry called ``name``, or None when the model has none."""
    from edgekit.runtime import tflite_schema as schema

    try:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if _text(entry.Name()) == name:
                return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    except Exception as exc:  # malformed flatbuffers raise anything from IndexError to struct.error
        raise ModelFileError(f"cannot read the TFLite metadata: {exc}",
                             fix="check that the file is a complete .tflite model") from exc
    return None


def with_metadata_buffer(data: bytes, name: str, payload: bytes) -> bytes:
    """A copy of the flatbuffer whose metadata entry ``name`` holds ``payload``.

    An existing entry is replaced (its old buffer is emptied, indices stay valid). Refuses models
    whose weights live outside the flatbuffer (>2 GiB layout), which the object API would drop.
    """
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # malformed flatbuffers raise anything from IndexError to struct.error
        raise ModelFileError(f"cannot parse the TFLite flatbuffer to embed metadata: {exc}",
                             fix="check that the file is a complete .tflite model") from exc
    buffers = model.buffers or []
    if any((b.offset or 0) > 1 for b in buffers):
        raise ModelFileError("this .tflite keeps its weights outside the flatbuffer (>2 GiB layout)",
                             fix="keep the model below 2 GiB to embed edgekit metadata")
    stored = schema.BufferT()
    stored.data = np.frombuffer(payload, dtype=np.uint8)
    entries = list(model.metadata or [])
    existing = [m for m in entries if _text(m.name) == name]
    if existing:
        buffers[existing[0].buffer] = stored
        for extra in existing[1:]:
            entries.remove(extra)
    else:
        buffers.append(stored)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(buffers) - 1
        entries.append(entry)
    model.buffers = buffers
    model.metadata = entries
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())
