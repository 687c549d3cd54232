"""Read a .tflite flatbuffer into plain Python records, without TensorFlow or an interpreter.

Target checks (Edge TPU compatibility, op counts, parameter sizes) need the graph as the file
describes it: operators in execution order with their builtin name and version, tensors with
dtype, shape, ``shape_signature`` (-1 = dynamic) and quantization, and which tensors are
constants. ``ai_edge_litert.schema_py_generated`` reads the flatbuffer directly (~ms, no
allocation of tensors), so this works on machines that only have the light runtime installed.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from edgekit.errors import ModelFileError

FILE_IDENTIFIER = b"TFL3"


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


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", errors="replace") if raw else ""


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
        is_variable=bool(t.IsVariable()),
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


def read_tflite(path: Path | str) -> TfliteGraph:
    """Read and parse a .tflite file, after the runtime's byte-level checks (empty, LFS pointer, ...)."""
    from edgekit.runtime.safety import check_model_file

    path = Path(path)
    check_model_file(path, "tflite")
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelFileError(f"{path} does not exist", fix="check the path to the .tflite model") from exc
    except IsADirectoryError as exc:
        raise ModelFileError(f"{path} is a folder", fix="pass the .tflite file itself") from exc
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror}", fix="check the file's permissions") from exc
    return parse_tflite(data, path=str(path))

