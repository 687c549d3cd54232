"""Edge TPU target: a static compatibility report, and the real ``edgetpu_compiler`` where installed.

The compiler only exists for Debian/Ubuntu x86-64, so most machines cannot run it. The static
report reads the .tflite flatbuffer and applies the rules of Coral's "TensorFlow models on the
Edge TPU" page (https://coral.ai/docs/edgetpu/models-intro/), each rule citing its source below:

- every tensor the op computes on is int8/uint8 (parameters may be int32 biases);
- tensor sizes are constant at compile time (no dynamic dims, e.g. a -1 batch);
- "If a tensor has more than 3 dimensions, then only the 3 innermost dimensions may have a size
  greater than 1";
- the op is in the supported-operations table (runtime 14, compiler 16), within its known limitations;
- the compiler partitions once: from the first op it cannot map, that op and everything after it runs
  on the CPU ("More than one subgraph is not supported" in its log).

``agreement_with_compiler`` checks the report against a real compiler output (ops outside
``edgetpu-custom-op`` ran on the CPU); benchmarks/edgetpu_agreement.py tabulates it per model.
Statuses reuse the compiler's own log wording where it has one (see ``tests/data/edgetpu_compiler``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.artifacts import (
    TEMP_PREFIX,
    Artifact,
    Manifest,
    check_output_dir,
    library_versions,
    load_artifact,
    parent_record,
    sha256_file,
    write_artifact,
    write_json_atomic,
    write_text_atomic,
)
from edgekit.errors import ConversionError, DeviceUnavailableError, ModelFileError, ValidationError
from edgekit.runtime.safety import read_tflite
from edgekit.runtime.tflite_file import OperatorInfo, SubgraphInfo, TensorInfo

COMPILER_ENV = "EDGETPU_COMPILER"
COMPILER_NAME = "edgetpu_compiler"
REPORT_NAME = "edgetpu_report.json"
INT8_FIX = "quantize it fully to int8 first: `edgekit compress --int8`, then compile the int8 model"
INSTALL_HINT = ("the Edge TPU compiler is not installed (it exists for Debian/Ubuntu x86-64 only: apt package "
                "`edgetpu-compiler` from packages.cloud.google.com, repository 'coral-edgetpu-stable')")

# The Edge TPU keeps parameters in ~8 MB of on-chip SRAM; what does not fit is streamed from host
# memory on every inference. Real compiler logs report 6.2-7.5 MiB available for parameters.
ON_CHIP_CACHE_BYTES = 8 * 1024 * 1024

MAPPED = "Mapped to Edge TPU"
AFTER_CUT = "More than one subgraph is not supported"
NOT_SUPPORTED = "Operation not supported"
BAD_DTYPE = "Operation is working on an unsupported data type"
BAD_RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
BAD_VERSION = "Operation version not supported"
DYNAMIC = "Tensor has a dynamic shape (sizes must be constant at compile time)"
LIMITATION = "Operation is otherwise supported, but not mapped due to a documented limitation"

QUANTIZED_DTYPES = frozenset({"INT8", "UINT8"})

# Sources the rules below cite (short names used in comments):
# [table]  Coral, "TensorFlow models on the Edge TPU", supported operations table for Edge TPU runtime 14 /
#          compiler 16 (https://coral.ai/docs/edgetpu/models-intro/#supported-operations), "Known limitations".
# [reqs]   the same page, "Model requirements" (int8 tensors, constant sizes, 3 innermost dimensions).
# [compiling] Coral, "Edge TPU Compiler" (https://coral.ai/docs/edgetpu/compiler/) and the models-intro
#          "Compiling" section: the compiler partitions once; from the first op it cannot map, that op and
#          everything after it runs on the CPU.
# [measured] google-coral/test_data pairs compiled by compiler 16 (../shared/models/edgetpu-compiled).
# Limits the file cannot show ("Certain reshapes might not be mapped for large tensor sizes") are left out.


def _fused_activation_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] AveragePool2d, MaxPool2d: "No fused activation function"."""
    return None if op.fused_activation in ("", "NONE") else f"fused activation {op.fused_activation} (none allowed)"


def _concat_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] Concatenation: no fused activation; "If any input is a compile-time constant tensor, there
    must be only 2 inputs" (and the constant all zeros: a zero-padding op)."""
    if (reason := _fused_activation_limits(op, sub)) is not None:
        return reason
    has_constant = any(sub.tensors[i].is_constant for i in op.inputs if i >= 0)
    if has_constant and len(op.inputs) != 2:
        return "a constant input is allowed only with exactly 2 inputs (zero padding)"
    return None


def _same_dilation(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] Conv2d, DepthwiseConv2d: "Must use the same dilation in x and y dimensions"."""
    h, w = op.options.get("dilationHFactor", 1), op.options.get("dilationWFactor", 1)
    return None if h == w else f"dilation {h}x{w} differs between y and x"


def _axis(value: int, rank: int) -> int:
    return value % rank if rank else value


def _touches_batch(axes: tuple[int, ...] | None, rank: int) -> bool:
    """True when an op works along the batch (outermost) dimension of a rank-4 NHWC tensor."""
    return rank == 4 and axes is not None and any(_axis(a, rank) == 0 for a in axes)


def _reduce_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] Mean, Sum, ReduceMax, ReduceMin: "No reduction in batch dimension"; Mean: "If a
    z-reduction, the z-dimension must be multiple of 4"."""
    data, axes = sub.tensors[op.inputs[0]], sub.tensors[op.inputs[1]].int_values
    rank = len(data.shape)
    if axes is None:
        return "reduction axes are not a compile-time constant"
    if _touches_batch(axes, rank):
        return f"reduces over axes {list(axes)}, including the batch dimension"
    if op.op == "MEAN" and rank and rank - 1 in {_axis(a, rank) for a in axes} and data.shape[-1] % 4:
        return f"reduces over z with depth {data.shape[-1]} (must be a multiple of 4)"
    return None


def _pad_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] Pad: "No padding in batch dimension"."""
    data, paddings = sub.tensors[op.inputs[0]], sub.tensors[op.inputs[1]]
    values = paddings.int_values
    if values is None:
        return "paddings are not a compile-time constant"
    padded = tuple(axis for axis in range(len(values) // 2) if values[2 * axis] or values[2 * axis + 1])
    if _touches_batch(padded, len(data.shape)):
        return f"pads axes {list(padded)}, including the batch dimension"
    return None


def _pack_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] Pack: "No packing in batch dimension" (axis 0 of the 4-D output)."""
    rank = len(sub.tensors[op.outputs[0]].shape)
    return "packs along the batch dimension" if _touches_batch((int(op.options.get("axis", 0)),), rank) else None


def _split_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] Split: "No splitting in batch dimension" (SPLIT's first input is the axis)."""
    axis, data = sub.tensors[op.inputs[0]].int_values, sub.tensors[op.inputs[1]]
    return "splits along the batch dimension" if _touches_batch(axis, len(data.shape)) else None


def _effectively_1d(tensor: TensorInfo) -> bool:
    return sum(1 for d in tensor.shape if d > 1) <= 1


def _fully_connected_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] FullyConnected: "Only the default format is supported for fully-connected weights. Output
    tensor is one-dimensional"."""
    if op.options.get("weightsFormat", 0) != 0:
        return f"weights format {op.options['weightsFormat']} (only the default format)"
    out = sub.tensors[op.outputs[0]]
    return None if _effectively_1d(out) else f"output shape {list(out.shape)} is not one-dimensional"


def _softmax_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] Softmax: "Supports only 1-D input tensor with a max of 16,000 elements"."""
    data = sub.tensors[op.inputs[0]]
    elements = 1
    for d in data.shape:
        elements *= max(d, 1)
    if not _effectively_1d(data) or elements > 16000:
        return f"input shape {list(data.shape)} (only a 1D input of at most 16,000 elements)"
    return None


def _strided_slice_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] StridedSlice: "Supports only all strides equal to 1 (that is, effectively a Stride op), and
    with ellipsis-axis-mask == 0, and new-axis-max == 0"."""
    strides = sub.tensors[op.inputs[3]].int_values if len(op.inputs) > 3 else None
    if strides is None or any(s != 1 for s in strides):
        return f"strides {list(strides) if strides else strides} (all strides must be 1)"
    masks = {key: op.options.get(key, 0) for key in ("ellipsisMask", "newAxisMask")}
    if any(masks.values()):
        return f"{masks} (ellipsis and new-axis masks must be 0)"
    return None


def _squeeze_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] Squeeze (runtime <= 12 row, kept as a conservative check): only leading 1s are squeezed."""
    shape = sub.tensors[op.inputs[0]].shape
    first_big = next((i for i, d in enumerate(shape) if d > 1), len(shape))
    if any(d == 1 for d in shape[first_big:]):
        return f"input shape {list(shape)} squeezes a 1 after a larger dim (only leading 1s)"
    return None


def _prelu_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] PReLU: "Alpha must be 1-dimensional (only the innermost dimension can be >1 size)"."""
    alpha = sub.tensors[op.inputs[1]].shape
    return None if all(d == 1 for d in alpha[:-1]) else f"alpha shape {list(alpha)} (only the innermost dim may be >1)"


def _resize_limits(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    """[table] ResizeBilinear, ResizeNearestNeighbor: "Input/output is a 3-dimensional tensor. Depending on
    input/output size, this operation may not be mapped to the Edge TPU to avoid loss in precision".

    The size rule is read as: each spatial dim is scaled by a whole factor. With ``align_corners`` the
    sampling step is (in-1)/(out-1), so a 1-pixel input has no grid to interpolate and (out-1) must be a
    multiple of (in-1); without it, out and in must divide one another. [measured] compiler 16 leaves
    deeplabv3's 1x1 -> 33x33 align_corners resize on the CPU; whole-factor upsampling (Keras
    UpSampling2D) is reported mapped in google-coral/edgetpu#31 and #396. Fractional factors are this
    reading's guess at "loss in precision": no compiler output here confirms or refutes them.
    """
    data, out = sub.tensors[op.inputs[0]], sub.tensors[op.outputs[0]]
    if len(data.shape) != 4 or data.shape[0] != 1:
        return f"input shape {list(data.shape)} is not a 3-dimensional (batch 1 HWC) tensor"
    align = bool(op.options.get("alignCorners", False))
    for axis, (n_in, n_out) in zip("yx", zip(data.shape[1:3], out.shape[1:3], strict=True), strict=True):
        if align and n_out > 1 and (n_in == 1 or (n_out - 1) % (n_in - 1)):
            return f"align_corners resize of {axis} from {n_in} to {n_out} is not a whole-factor upsampling"
        if not align and max(n_in, n_out) % max(min(n_in, n_out), 1):
            return f"resize of {axis} from {n_in} to {n_out} is not by a whole factor"
    return None


def _no_limit(op: OperatorInfo, sub: SubgraphInfo) -> str | None:
    return None


# [table] rows for runtime 14 (compiler 16), by TFLite builtin name, with the limitation each row states.
# "LSTM: Unidirectional LSTM only" is UNIDIRECTIONAL_SEQUENCE_LSTM ([measured]: keras_lstm_mnist_ptq
# maps whole). QUANTIZE ("Runtime >= 13") is also quoted in google-coral/edgetpu#659.
SUPPORTED_OPS: dict[str, Callable[[OperatorInfo, SubgraphInfo], str | None]] = {
    "ADD": _no_limit, "AVERAGE_POOL_2D": _fused_activation_limits, "CONCATENATION": _concat_limits,
    "CONV_2D": _same_dilation, "DEPTHWISE_CONV_2D": _same_dilation, "EXPAND_DIMS": _no_limit,
    "FULLY_CONNECTED": _fully_connected_limits, "L2_NORMALIZATION": _no_limit, "LOGISTIC": _no_limit,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _no_limit, "MAXIMUM": _no_limit, "MAX_POOL_2D": _fused_activation_limits,
    "MEAN": _reduce_limits, "MINIMUM": _no_limit, "MUL": _no_limit, "PACK": _pack_limits, "PAD": _pad_limits,
    "PRELU": _prelu_limits, "QUANTIZE": _no_limit, "REDUCE_MAX": _reduce_limits, "REDUCE_MIN": _reduce_limits,
    "RELU": _no_limit, "RELU6": _no_limit, "RELU_N1_TO_1": _no_limit, "RESHAPE": _no_limit,
    "RESIZE_BILINEAR": _resize_limits, "RESIZE_NEAREST_NEIGHBOR": _resize_limits, "RSQRT": _no_limit,
    "SLICE": _no_limit, "SOFTMAX": _softmax_limits, "SPACE_TO_DEPTH": _no_limit, "SPLIT": _split_limits,
    "SQUARED_DIFFERENCE": _no_limit, "SQUEEZE": _squeeze_limits, "STRIDED_SLICE": _strided_slice_limits,
    "SUB": _no_limit, "SUM": _reduce_limits, "TANH": _no_limit, "TRANSPOSE": _no_limit, "TRANSPOSE_CONV": _no_limit,
}

# Op versions that Edge TPU Compiler 16.0.384591198 rejects with "Didn't find op for builtin opcode
# ... version N" (the whole model then fails to parse): google-coral/edgetpu#631 (CONV_2D 6),
# #845 (TRANSPOSE_CONV 4), #879 (QUANTIZE 3). Value = the highest version assumed accepted.
OP_VERSION_CEILING = {"CONV_2D": 5, "TRANSPOSE_CONV": 3, "QUANTIZE": 2}
# Compiler 16 rejects builtin codes it does not know ("Op builtin_code out of range: 151", #862).
MAX_BUILTIN_CODE = 150


@dataclass
class OpVerdict:
    index: int
    op: str
    version: int
    mapped: bool
    custom_code: str | None
    status: str  # compiler-style status line
    reasons: list[str] = field(default_factory=list)  # why it cannot map itself (empty if it could)


@dataclass
class EdgeTpuReport:
    """What the Edge TPU compiler would map, judged from the file alone (``source='static'``)."""

    model: str
    size_bytes: int
    fully_int8: bool
    ops: list[OpVerdict]
    cut_index: int | None  # first op (execution order) that runs on the CPU; None = all mapped
    parameter_bytes: int  # constant data used by mapped ops
    on_chip_bytes: int
    off_chip_bytes: int
    issues: list[str]  # model-level problems, most important first
    compiler_would_reject: list[str]  # problems that stop compiler 16 from parsing the model at all
    cache_bytes: int = ON_CHIP_CACHE_BYTES
    subgraphs: int = 1
    source: str = "static"

    @property
    def edgetpu_ops(self) -> int:
        return sum(1 for v in self.ops if v.mapped)

    @property
    def cpu_ops(self) -> int:
        return len(self.ops) - self.edgetpu_ops

    @property
    def fully_mapped(self) -> bool:
        return self.cut_index is None and not self.compiler_would_reject

    def operator_table(self) -> list[tuple[str, int, str]]:
        """(operator, count, status) rows grouped like the compiler's log, in first-seen order."""
        counts: dict[tuple[str, str], int] = {}
        for verdict in self.ops:
            counts[(verdict.op, verdict.status)] = counts.get((verdict.op, verdict.status), 0) + 1
        return [(op, n, status) for (op, status), n in counts.items()]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(edgetpu_ops=self.edgetpu_ops, cpu_ops=self.cpu_ops, fully_mapped=self.fully_mapped,
                    operator_table=[{"operator": o, "count": n, "status": s} for o, n, s in self.operator_table()])
        return data

    def summary_lines(self) -> list[str]:
        lines = [f"Edge TPU static compatibility report (no compiler run): {self.model}",
                 f"On-chip memory estimated for caching model parameters: {format_bytes(self.on_chip_bytes)}",
                 f"Off-chip memory estimated for streaming uncached model parameters: {format_bytes(self.off_chip_bytes)}",
                 f"Total number of operations: {len(self.ops)}"]
        lines += [f"Issue: {issue}" for issue in self.issues]
        lines += [f"Compiler 16 would refuse the model: {why}" for why in self.compiler_would_reject]
        if self.cut_index is not None:
            first = self.ops[self.cut_index]
            head = f"ops 0..{self.cut_index - 1} on the Edge TPU, " if self.cut_index else "nothing on the Edge TPU, "
            lines.append(f"Partition: {head}CPU from op {self.cut_index} "
                         f"({first.op}: {'; '.join(first.reasons) or first.status})")
        lines += [f"Number of operations that will run on Edge TPU: {self.edgetpu_ops}",
                  f"Number of operations that will run on CPU: {self.cpu_ops}", "",
                  f"{'Operator':<31}{'Count':<11}Status", ""]
        lines += [f"{op:<31}{n:<11}{status}" for op, n, status in self.operator_table()]
        return lines


def format_bytes(n: int) -> str:
    """Sizes as the compiler prints them: 0.00B, 932.50KiB, 6.71MiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{float(n):.2f}B"


def _activations(op: OperatorInfo, sub: SubgraphInfo) -> list[TensorInfo]:
    """Tensors the op computes on: not its parameters, nor its state. An integer LSTM keeps its cell
    state in int16 by design (TFLite's 8-bit quantization spec), and [measured] compiler 16 maps it."""
    return [sub.tensors[i] for i in op.inputs + op.outputs
            if i >= 0 and not sub.tensors[i].is_constant and not sub.tensors[i].is_variable]


def _is_io_conversion(op: OperatorInfo, sub: SubgraphInfo) -> bool:
    """A float->int8 QUANTIZE on a model input or int8->float DEQUANTIZE on an output: the CPU runs
    it at the graph's edge, so it does not split the Edge TPU subgraph."""
    return ((op.op == "QUANTIZE" and op.inputs[0] in sub.inputs)
            or (op.op == "DEQUANTIZE" and op.outputs[0] in sub.outputs))


def _op_reasons(op: OperatorInfo, sub: SubgraphInfo) -> tuple[str, list[str]]:
    """(status, reasons) for one op judged on its own; status is MAPPED when nothing is wrong."""
    activations = _activations(op, sub)
    checks: list[tuple[str, str | None]] = []
    if op.op == "CUSTOM":
        checks.append((NOT_SUPPORTED, f"custom op {op.custom_code!r}"))
    elif op.op not in SUPPORTED_OPS:
        checks.append((NOT_SUPPORTED, f"{op.op} is not in the Edge TPU supported-operations table"))
    if op.op in OP_VERSION_CEILING and op.version > OP_VERSION_CEILING[op.op]:
        checks.append((BAD_VERSION, f"{op.op} version {op.version} > {OP_VERSION_CEILING[op.op]} "
                                    "(the newest the Edge TPU compiler knows)"))
    float_tensors = sorted({f"{t.name or t.index} ({t.dtype})" for t in activations if t.dtype not in QUANTIZED_DTYPES})
    if float_tensors:
        checks.append((BAD_DTYPE, f"non-int8 tensors: {', '.join(float_tensors[:3])}"
                                  + (f" and {len(float_tensors) - 3} more" if len(float_tensors) > 3 else "")))
    dynamic = [t for t in activations if t.is_dynamic]
    if dynamic:
        checks.append((DYNAMIC, f"dynamic dims in {dynamic[0].name or dynamic[0].index} "
                                f"shape_signature {list(dynamic[0].shape_signature)}"))
    too_deep = [t for t in activations if len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3])]
    if too_deep:
        checks.append((BAD_RANK, f"{too_deep[0].name or too_deep[0].index} has shape {list(too_deep[0].shape)}"))
    limit = SUPPORTED_OPS.get(op.op)
    if limit is not None and not checks:
        checks.append((LIMITATION, limit(op, sub)))
    found = [(status, reason) for status, reason in checks if reason]
    return (found[0][0], [reason for _, reason in found]) if found else (MAPPED, [])


def _non_int8_activations(sub: SubgraphInfo) -> set[str]:
    """dtypes of the non-int8 tensors that ops the Edge TPU supports compute on, ignoring I/O conversions.

    Tensors only CPU-bound ops touch (a custom decoder's float outputs, ARG_MAX's int64) do not make a
    model "not quantized": the compiler compiles such models and leaves those ops on the CPU.
    """
    return {t.dtype for op in sub.operators if op.op in SUPPORTED_OPS and not _is_io_conversion(op, sub)
            for t in _activations(op, sub) if t.dtype not in QUANTIZED_DTYPES}


def _model_issues(verdicts: list[OpVerdict], sub: SubgraphInfo, n_subgraphs: int) -> list[str]:
    issues = []
    activations = [t for t in sub.tensors if not t.is_constant and not t.is_variable]
    floats = _non_int8_activations(sub)
    int8_weights = any(t.is_constant and t.dtype == "INT8" for t in sub.tensors)
    if floats and int8_weights:
        issues.append(f"dynamic-range model: int8 weights but {'/'.join(sorted(floats))} activations")
    elif floats:
        issues.append(f"not quantized: {'/'.join(sorted(floats))} activations")
    dynamic = sorted({t.name for t in activations if t.is_dynamic})
    if dynamic:
        issues.append(f"dynamic shapes (-1 dims, e.g. a dynamic batch) in {len(dynamic)} tensors, e.g. {dynamic[0]}")
    unsupported = sorted({v.op for v in verdicts if v.status == NOT_SUPPORTED})
    if unsupported:
        issues.append(f"operations the Edge TPU does not support: {', '.join(unsupported)}")
    if n_subgraphs > 1:
        issues.append(f"{n_subgraphs} subgraphs (control flow): only the main subgraph is checked")
    return issues


def compatibility_report(path: Path | str) -> EdgeTpuReport:
    """Judge a .tflite file against the Edge TPU's documented requirements, op by op."""
    graph = read_tflite(path)
    sub = graph.main
    verdicts, cut = [], None
    for op in sub.operators:
        status, reasons = _op_reasons(op, sub)
        edge_op = _is_io_conversion(op, sub)
        if status != MAPPED and not edge_op and cut is None:
            cut = op.index
        if status == MAPPED and cut is not None:
            status = AFTER_CUT
        verdicts.append(OpVerdict(index=op.index, op=op.op, version=op.version, mapped=status == MAPPED,
                                  custom_code=op.custom_code, status=status, reasons=reasons))
    mapped_params = {i: sub.tensors[i].buffer_size for v, op in zip(verdicts, sub.operators, strict=True)
                     if v.mapped for i in op.inputs if i >= 0 and sub.tensors[i].is_constant}
    parameter_bytes = sum(mapped_params.values())
    reject = [f"{v.op} version {v.version}" for v in verdicts if v.status == BAD_VERSION]
    reject += [f"builtin code {op.builtin_code} ({op.op}) is newer than the compiler"
               for op in sub.operators if op.builtin_code > MAX_BUILTIN_CODE]
    return EdgeTpuReport(
        model=str(path), size_bytes=graph.size_bytes,
        fully_int8=not _non_int8_activations(sub),
        ops=verdicts, cut_index=cut, parameter_bytes=parameter_bytes,
        on_chip_bytes=min(parameter_bytes, ON_CHIP_CACHE_BYTES),
        off_chip_bytes=max(parameter_bytes - ON_CHIP_CACHE_BYTES, 0),
        issues=_model_issues(verdicts, sub, len(graph.subgraphs)), compiler_would_reject=reject,
        subgraphs=len(graph.subgraphs))


# ---------------------------------------------------------------------------------------------
# The real compiler

_SIZE_RE = r"([\d.]+)\s*(B|KiB|MiB|GiB)"
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
_SUMMARY_PATTERNS = {
    "compiler_version": re.compile(r"^Edge TPU Compiler version (\S+)", re.M),
    "on_chip_bytes": re.compile(r"^On-chip memory used for caching model parameters:\s*" + _SIZE_RE, re.M),
    "on_chip_remaining_bytes": re.compile(r"^On-chip memory remaining for caching model parameters:\s*" + _SIZE_RE, re.M),
    "on_chip_available_bytes": re.compile(r"^On-chip memory available for caching model parameters:\s*" + _SIZE_RE, re.M),
    "off_chip_bytes": re.compile(r"^Off-chip memory used for streaming uncached model parameters:\s*" + _SIZE_RE, re.M),
    "edgetpu_subgraphs": re.compile(r"^Number of Edge TPU subgraphs:\s*(\d+)", re.M),
    "total_ops": re.compile(r"^Total number of operations:\s*(\d+)", re.M),
    "edgetpu_ops": re.compile(r"^Number of operations that will run on Edge TPU:\s*(\d+)", re.M),
    "cpu_ops": re.compile(r"^Number of operations that will run on CPU:\s*(\d+)", re.M),
    "compile_ms": re.compile(r"^Model compiled successfully in (\d+) ms", re.M),
}
_TABLE_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$", re.M)


def parse_compiler_log(text: str) -> dict[str, Any]:
    """Numbers from ``edgetpu_compiler`` stdout and/or its ``*_edgetpu.log`` (absent keys stay out)."""
    parsed: dict[str, Any] = {}
    for key, pattern in _SUMMARY_PATTERNS.items():
        match = pattern.search(text)
        if match is None:
            continue
        if key == "compiler_version":
            parsed[key] = match.group(1)
        elif key.endswith("_bytes"):
            parsed[key] = round(float(match.group(1)) * _UNITS[match.group(2)])
        else:
            parsed[key] = int(match.group(1))
    table_at = text.find("Operator")
    if table_at >= 0:
        rows = [{"operator": op, "count": int(n), "status": status}
                for op, n, status in _TABLE_ROW.findall(text[table_at:])]
        if rows:
            parsed["operators"] = rows
            parsed.setdefault("edgetpu_ops", sum(r["count"] for r in rows if r["status"] == MAPPED))
            parsed.setdefault("cpu_ops", sum(r["count"] for r in rows if r["status"] != MAPPED))
    return parsed


EDGETPU_CUSTOM_CODE = "edgetpu-custom-op"


def _op_name(op: OperatorInfo | OpVerdict) -> str:
    """Custom ops by their custom code (PosenetDecoderOp), builtins by name: how the compiler log shows them."""
    return op.custom_code or op.op


def compiled_cpu_ops(source: Path | str, compiled: Path | str) -> tuple[list[str], int | None]:
    """What the real compiler left on the CPU: (op names in execution order, source index of the first).

    In a compiled file every op outside ``edgetpu-custom-op`` runs on the CPU; the first one is found
    in the source graph by the name of the tensor it writes (the compiler keeps tensor names).
    """
    source_sub, compiled_sub = read_tflite(source).main, read_tflite(compiled).main
    cpu = [op for op in compiled_sub.operators if op.custom_code != EDGETPU_CUSTOM_CODE]
    if not cpu:
        return [], None
    first_output = compiled_sub.tensors[cpu[0].outputs[0]].name
    cut = next((op.index for op in source_sub.operators
                if any(source_sub.tensors[i].name == first_output for i in op.outputs)), None)
    return [_op_name(op) for op in cpu], cut


def agreement_with_compiler(source: Path | str, compiled: Path | str) -> dict[str, Any]:
    """The static report on ``source`` against the compiler's output ``compiled``: CPU ops and the cut."""
    report = compatibility_report(source)
    compiler_cpu, compiler_cut = compiled_cpu_ops(source, compiled)
    report_cpu = [_op_name(v) for v in report.ops if not v.mapped]
    counts = {"report": _counts(report_cpu), "compiler": _counts(compiler_cpu)}
    return {"model": Path(source).name, "ops": len(report.ops),
            "cpu_ops": {"report": report_cpu, "compiler": compiler_cpu}, "cpu_op_counts": counts,
            "cut": {"report": report.cut_index, "compiler": compiler_cut},
            "agrees": report_cpu == compiler_cpu and report.cut_index == compiler_cut}


def _counts(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def find_compiler() -> str | None:
    """The compiler executable: ``$EDGETPU_COMPILER`` if set, else ``edgetpu_compiler`` on PATH."""
    return shutil.which(os.environ.get(COMPILER_ENV) or COMPILER_NAME)


def _run_compiler(compiler: str, model: Path, work: Path, timeout_s: float) -> str:
    command = [compiler, "-s", "-o", str(work), str(model)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"{COMPILER_NAME} did not finish {model} within {timeout_s:.0f} s",
                              fix="raise the timeout, or compile a smaller model") from exc
    except OSError as exc:
        raise DeviceUnavailableError(f"cannot run {compiler}: {exc.strerror}",
                                     fix=f"check ${COMPILER_ENV} / the {COMPILER_NAME} installation") from exc
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = " | ".join(line for line in output.strip().splitlines()[-3:])
        raise ConversionError(f"{COMPILER_NAME} failed on {model} (exit {done.returncode}): {tail}",
                              fix="read `edgekit compile` static report for unsupported ops and op versions")
    return output


def _parent_artifact(model_path: Path) -> Artifact:
    parent = load_artifact(model_path, require_manifest=False)
    if parent.path.suffix.lower() != ".tflite":
        raise ModelFileError(f"{parent.path} is not a .tflite model",
                             fix="compile the int8 TFLite model written by `edgekit compress --int8`")
    if not parent.manifest.sha256:
        parent.manifest.sha256 = sha256_file(parent.path)
    return parent


def compile_edgetpu(model_path: Path | str, *, out_dir: Path | str, timeout_s: float = 600.0) -> Artifact:
    """Compile an int8 .tflite for the Edge TPU into ``out_dir/<name>_edgetpu.tflite`` + manifest.json.

    Raises ValidationError for a model that is not fully int8 (see ``compatibility_report`` for
    why), and DeviceUnavailableError where the compiler is absent, after writing the static report
    to ``out_dir/edgetpu_report.json`` as the deliverable.
    """
    parent = _parent_artifact(Path(model_path))
    out = check_output_dir(Path(out_dir), inputs=(parent.path,))
    report = compatibility_report(parent.path)
    if not report.fully_int8:
        raise ValidationError(f"{parent.path} is not fully int8 ({'; '.join(report.issues)}): "
                              "the Edge TPU runs only int8/uint8 tensors", fix=INT8_FIX)
    compiler = find_compiler()
    if compiler is None:
        report_path = out / REPORT_NAME
        write_json_atomic(report_path, report.to_dict())
        raise DeviceUnavailableError(f"{INSTALL_HINT}; wrote the static compatibility report to {report_path} "
                                     f"instead ({report.edgetpu_ops}/{len(report.ops)} ops would map)",
                                     fix=f"install edgetpu-compiler or set ${COMPILER_ENV} to its path")
    name = f"{parent.path.stem}_edgetpu"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, dir=out) as work:
        stdout = _run_compiler(compiler, parent.path, Path(work), timeout_s)
        compiled, log_file = Path(work) / f"{name}.tflite", Path(work) / f"{name}.log"
        if not compiled.is_file():
            raise ConversionError(f"{COMPILER_NAME} reported success but wrote no {compiled.name}",
                                  fix="run the compiler by hand to see its output")
        log_text = log_file.read_text(encoding="utf-8", errors="replace") if log_file.is_file() else ""
        parsed = {**parse_compiler_log(log_text), **parse_compiler_log(stdout)}
        manifest = _compiled_manifest(parent, out, parsed, report, timeout_s)
        if log_text:
            write_text_atomic(out / f"{name}.log", log_text)
        return write_artifact(out, f"{name}.tflite", manifest, writer=lambda tmp: shutil.copyfile(compiled, tmp))


def _compiled_manifest(parent: Artifact, out: Path, parsed: dict[str, Any], report: EdgeTpuReport,
                       timeout_s: float) -> Manifest:
    pm = parent.manifest
    versions = library_versions("ai-edge-litert")
    if "compiler_version" in parsed:
        versions[COMPILER_NAME] = parsed["compiler_version"]
    metrics = {key: parsed[key] for key in ("edgetpu_ops", "cpu_ops", "edgetpu_subgraphs", "on_chip_bytes",
                                              "off_chip_bytes") if key in parsed}
    return Manifest(format="edgetpu-tflite", artifact="", stage="compile", labels=list(pm.labels),
                    preprocessing=dict(pm.preprocessing), input=dict(pm.input), output=dict(pm.output),
                    parent=parent_record(parent, out), backbone=pm.backbone, options={"timeout_s": timeout_s},
                    seed=pm.seed, metrics=metrics, versions=versions,
                    extra={"edgetpu_compiler": parsed,
                           "static_report": {"edgetpu_ops": report.edgetpu_ops, "cpu_ops": report.cpu_ops,
                                             "cut_index": report.cut_index, "issues": report.issues}})
