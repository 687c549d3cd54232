"""Inference backends: one small class per runtime, all exposing the same ``run(batch) -> raw output``.

.tflite runs on ``ai_edge_litert`` (preferred), else ``tflite_runtime``, else ``tensorflow.lite``
(deprecated and ~600 MiB heavier: warns). .onnx runs on onnxruntime. The GPU path for .tflite is
LiteRT's ``CompiledModel``. Each accelerator says whether it can work here with
:func:`accelerator_available` before any model is loaded; a missing one raises
:class:`DeviceUnavailableError` naming what is absent and how to get it.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib
import importlib.util
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np

from edgekit._tf import silence_native_stderr
from edgekit.errors import DeviceUnavailableError, ModelFileError, UsageError

ACCELERATORS = ("cpu", "cpu-reference", "gpu", "edgetpu")
EDGETPU_LIBRARY = "libedgetpu.so.1"
EDGETPU_FIX = ("install the Edge TPU runtime (Debian/Ubuntu: add the Coral apt repository, then "
               "`apt-get install libedgetpu1-std`) and plug in the device")
ORT_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_TFLITE_MODULES = (("ai_edge_litert", "ai_edge_litert.interpreter"), ("tflite_runtime", "tflite_runtime.interpreter"))


@dataclass(frozen=True)
class TensorSpec:
    """Shape, dtype and affine quantization (``real = (q - zero_point) * scale``; scale 0 = not quantized).

    :meth:`quantize` and :meth:`dequantize` are the one place edgekit maps between normalised float
    values and a model's integer tensors (export validation, evaluation and ``Predictor`` alike).
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0
    name: str = ""

    @property
    def quantized(self) -> bool:
        return self.scale > 0 and np.issubdtype(self.dtype, np.integer)

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Normalised float values as this tensor takes them: ``round(v / scale + zero_point)`` clipped to
        the integer range when quantized, rounded and clipped for a plain integer input, else a cast."""
        values = np.asarray(values, dtype=np.float32)
        if not np.issubdtype(self.dtype, np.integer):
            return values.astype(self.dtype)
        if self.quantized:
            values = values / self.scale + self.zero_point
        info = np.iinfo(self.dtype)
        return np.clip(np.round(values), info.min, info.max).astype(self.dtype)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """Raw tensor values as float32 (``(q - zero_point) * scale`` when quantized)."""
        raw = np.asarray(raw)
        return (raw.astype(np.float32) - self.zero_point) * self.scale if self.quantized else raw.astype(np.float32)

    def to_manifest(self) -> dict:
        """The record a manifest stores for this tensor."""
        return {"name": self.name, "shape": [int(d) for d in self.shape], "dtype": self.dtype.name,
                "scale": float(self.scale), "zero_point": int(self.zero_point)}


def tflite_runtime_module() -> tuple[str, ModuleType | SimpleNamespace]:
    """The first importable TFLite runtime: ``(backend name, module with Interpreter/load_delegate/OpResolverType)``."""
    for name, module_name in _TFLITE_MODULES:
        try:
            return name, importlib.import_module(module_name)
        except Exception:  # tflite_runtime built for numpy 1 raises at import under numpy 2
            continue
    if importlib.util.find_spec("tensorflow") is None:
        raise DeviceUnavailableError("no TFLite runtime is installed",
                                     fix="pip install ai-edge-litert (or edgekit[runtime])")
    from edgekit._tf import import_tf

    warnings.warn("running .tflite through tensorflow.lite, which is deprecated and heavy; "
                  "pip install ai-edge-litert for the light runtime", DeprecationWarning, stacklevel=2)
    tf, _ = import_tf()
    return "tf.lite", SimpleNamespace(Interpreter=tf.lite.Interpreter,
                                      load_delegate=tf.lite.experimental.load_delegate,
                                      OpResolverType=tf.lite.experimental.OpResolverType)


def _library_loadable(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def accelerator_available(name: str, model_format: str) -> tuple[bool, str]:
    """Whether ``name`` can run a ``model_format`` ("tflite"/"onnx") model here, and why (not) — loads no model."""
    if name not in ACCELERATORS:
        return False, f"unknown accelerator {name!r} (choose from {', '.join(ACCELERATORS)})"
    if model_format not in ("tflite", "onnx", "edgetpu-tflite"):
        return False, f"the runtime runs .tflite and .onnx models, not {model_format!r}"
    if model_format == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed (pip install onnxruntime)"
        if name == "cpu":
            return True, "onnxruntime CPUExecutionProvider"
        if name == "cpu-reference":
            return True, "onnxruntime CPUExecutionProvider with graph optimisations off"
        if name == "edgetpu":
            return False, "the Edge TPU runs compiled .tflite models only, not ONNX"
        import onnxruntime

        found = [p for p in ORT_GPU_PROVIDERS if p in onnxruntime.get_available_providers()]
        if found:
            return True, f"onnxruntime {', '.join(found)}"
        return False, "onnxruntime has no CUDA/TensorRT execution provider here (pip install onnxruntime-gpu)"
    has_litert = importlib.util.find_spec("ai_edge_litert") is not None
    if name in ("cpu", "cpu-reference"):
        if has_litert or importlib.util.find_spec("tflite_runtime") or importlib.util.find_spec("tensorflow"):
            return True, "TFLite interpreter on the CPU" + (" (XNNPACK)" if name == "cpu" else " (reference kernels)")
        return False, "no TFLite runtime is installed (pip install ai-edge-litert)"
    if name == "edgetpu":
        if _library_loadable(EDGETPU_LIBRARY):
            return True, f"{EDGETPU_LIBRARY} found"
        return False, f"{EDGETPU_LIBRARY} (the Edge TPU runtime) is not installed"
    if not has_litert:
        return False, "the LiteRT GPU accelerator needs ai-edge-litert (pip install ai-edge-litert)"
    if not _library_loadable("libvulkan.so.1"):
        return False, "no Vulkan loader (libvulkan.so.1), so LiteRT's WebGPU accelerator has no GPU adapter"
    return True, "Vulkan loader found; the GPU adapter is checked when the model loads"


def _require(accelerator: str, model_format: str, fix: str) -> None:
    ok, reason = accelerator_available(accelerator, model_format)
    if not ok:
        raise DeviceUnavailableError(f"accelerator {accelerator!r} is unavailable: {reason}", fix=fix)


def tflite_io_specs(model_bytes: bytes) -> tuple[TensorSpec, TensorSpec]:
    """Input/output specs of subgraph 0 read from the flatbuffer (no interpreter needed)."""
    from edgekit.runtime.tflite_file import io_tensors, numpy_dtype

    def spec(tensor) -> TensorSpec:
        return TensorSpec(tensor.shape, numpy_dtype(tensor.dtype), tensor.scale[0] if tensor.scale else 0.0,
                          tensor.zero_point[0] if tensor.zero_point else 0, tensor.name)

    return tuple(spec(tensor) for tensor in io_tensors(model_bytes))


class TFLiteBackend:
    """A TFLite ``Interpreter``: cpu (XNNPACK), cpu-reference (builtin kernels, no delegates) or edgetpu."""

    def __init__(self, path: Path | bytes, *, threads: int | None, accelerator: str):
        self.name, module = tflite_runtime_module()
        kwargs: dict = {"num_threads": threads}
        if isinstance(path, bytes):
            kwargs["model_content"], path = path, "the model"
        else:
            kwargs["model_path"] = str(path)
        if accelerator == "cpu-reference":
            kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif accelerator == "edgetpu":
            _require("edgetpu", "tflite", EDGETPU_FIX)
            try:
                kwargs["experimental_delegates"] = [module.load_delegate(EDGETPU_LIBRARY)]
            except (ValueError, OSError, RuntimeError) as exc:
                raise DeviceUnavailableError(f"the Edge TPU delegate ({EDGETPU_LIBRARY}) failed to load: {exc}",
                                             fix="plug in the Edge TPU and check its udev permissions") from exc
        try:
            with silence_native_stderr():
                self.interpreter = module.Interpreter(**kwargs)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"the TFLite interpreter cannot load {path}: {exc}",
                                 fix="re-export the model (for edgetpu: compile it with edgetpu_compiler)") from exc
        self.input = self._spec(self.interpreter.get_input_details()[0])
        self.output = self._spec(self.interpreter.get_output_details()[0])
        self._dynamic_batch = int(self.interpreter.get_input_details()[0]["shape_signature"][0]) == -1

    @staticmethod
    def _spec(detail: dict) -> TensorSpec:
        scale, zero = detail.get("quantization", (0.0, 0))
        return TensorSpec(tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]), float(scale), int(zero),
                          detail.get("name", ""))

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        in_index = self.interpreter.get_input_details()[0]["index"]
        if tuple(self.interpreter.get_input_details()[0]["shape"]) != batch.shape:
            self.interpreter.resize_input_tensor(in_index, batch.shape)
            self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(in_index, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.interpreter.get_output_details()[0]["index"]).copy()

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._dynamic_batch or batch.shape[0] == self.input.shape[0]:
            return self._invoke(batch)
        step = self.input.shape[0]
        return np.concatenate([self._invoke(batch[i:i + step]) for i in range(0, len(batch), step)])


_NATIVE_ERROR = re.compile(r"^(?:ERROR: \[[^\]]+\]|E\d{4} [^\]]+\]) (?P<reason>\S.*)$")


def native_error_reason(logged: list[str], raised: str) -> str:
    """The first reason LiteRT logged on stderr (``Failed to initialize WebGPU environment: INTERNAL: No
    adapters found``); the text it raised holds only source locations, the fallback when nothing was logged."""
    for line in logged:
        found = _NATIVE_ERROR.match(line.strip())
        if found:
            return found["reason"]
    return " ".join(line.strip(" └") for line in raised.splitlines()) or "no reason given"


@functools.cache
def _quiet_litert_teardown() -> None:
    """At exit, send fd 2 to /dev/null: LiteRT logs every accelerator it destroys as its environments go, after
    edgekit's last line (an answer or an error) has been printed. Registered once, by the first CompiledModel."""
    if not os.environ.get("EDGEKIT_DEBUG"):
        atexit.register(_stderr_to_devnull)


def _stderr_to_devnull() -> None:
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


class LiteRTCompiledBackend:
    """LiteRT's ``CompiledModel`` on a hardware accelerator (GPU via WebGPU/OpenCL), one sample per run.

    The input and output buffers are made once and reused: a fresh pair per inference is what LiteRT's
    samples avoid, and on a GPU each pair is a device allocation."""

    name = "ai_edge_litert"

    def __init__(self, path: Path | bytes, *, hardware: str = "GPU"):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator

        model_bytes, path = (path, "the model") if isinstance(path, bytes) else (Path(path).read_bytes(), path)
        self.input, self.output = tflite_io_specs(model_bytes)
        failure = None
        with silence_native_stderr(stdout=True) as logged:
            try:
                self.model = CompiledModel.from_buffer(model_bytes, hardware_accel=HardwareAccelerator[hardware])
            except RuntimeError as exc:  # only its text is kept: the exception holds LiteRT's environment, whose
                failure = str(exc)       # teardown logs lines of its own, here rather than after the error
        if failure is not None:
            raise DeviceUnavailableError(f"LiteRT could not compile {path} for the {hardware}: "
                                         f"{native_error_reason(logged, failure)}",
                                         fix="use --accelerator cpu, or install the GPU's Vulkan driver "
                                             "(EDGEKIT_DEBUG=1 shows LiteRT's log)")
        self.fully_accelerated = self.model.is_fully_accelerated()
        self._inputs, self._results = self.model.create_input_buffers(0), self.model.create_output_buffers(0)
        self._count = int(np.prod(self.output.shape))
        self._ran = False
        _quiet_litert_teardown()

    def __del__(self):
        """Release the model quietly: its environment logs each accelerator it destroys."""
        if "model" in self.__dict__:
            with silence_native_stderr():
                self._inputs = self._results = self.model = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        if not self._ran:  # LiteRT sets up a second environment on the first run and logs each step of it
            self._ran = True
            with silence_native_stderr(stdout=True):
                return self._run(batch)
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        for sample in batch:
            self._inputs[0].write(np.ascontiguousarray(sample[None]))
            self.model.run_by_index(0, self._inputs, self._results)
            outputs.append(self._results[0].read(self._count, self.output.dtype).reshape(self.output.shape))
        return np.concatenate(outputs)


ORT_DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
              "tensor(float16)": np.float16, "tensor(double)": np.float64}  # onnxruntime type -> numpy


def is_nchw(shape: tuple[int, ...]) -> bool:
    """A 4-D image input laid out channels-first (1x3xHxW, as ``torch.onnx.export`` writes it)."""
    return len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3)


class OnnxBackend:
    """An onnxruntime session; NCHW models get their NHWC input transposed here."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, threads: int | None, accelerator: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if accelerator == "cpu-reference":
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        elif accelerator == "edgetpu":
            raise UsageError(f"--accelerator edgetpu cannot run {path}: the Edge TPU runs compiled .tflite only",
                             fix="export to tflite, compile it with edgetpu_compiler, and predict with that")
        elif accelerator == "gpu":
            _require("gpu", "onnx", "pip install onnxruntime-gpu (with a CUDA driver), or use --accelerator cpu")
            providers = [p for p in ORT_GPU_PROVIDERS if p in ort.get_available_providers()] + providers
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime's Fail/InvalidGraph/InvalidProtobuf are not one hierarchy
            raise ModelFileError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}",
                                 fix="re-export the model (opset and external data must be complete)") from exc
        node_in, node_out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self._input_name = node_in.name
        shape = tuple(d if isinstance(d, int) else -1 for d in node_in.shape)
        self.nchw = is_nchw(shape)
        nhwc = (shape[0], shape[2], shape[3], shape[1]) if self.nchw else shape
        self.input = TensorSpec(nhwc, np.dtype(ORT_DTYPES.get(node_in.type, np.float32)))
        self.output = TensorSpec(tuple(d if isinstance(d, int) else -1 for d in node_out.shape),
                                 np.dtype(ORT_DTYPES.get(node_out.type, np.float32)))
        self._fixed_batch = shape[0] if shape and shape[0] > 0 else None
        self.metadata_map = dict(self.session.get_modelmeta().custom_metadata_map)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        feed = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if self.nchw else batch
        return self.session.run(None, {self._input_name: feed})[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        step = self._fixed_batch
        if step is None or step == len(batch):
            return self._invoke(batch)
        return np.concatenate([self._invoke(batch[i:i + step]) for i in range(0, len(batch), step)])


def open_backend(path: Path | bytes, model_format: str, *, threads: int | None, accelerator: str):
    """The backend for a checked model file (or .tflite bytes) and accelerator."""
    if accelerator not in ACCELERATORS:
        raise UsageError(f"unknown --accelerator {accelerator!r}", fix=f"choose one of {', '.join(ACCELERATORS)}")
    if model_format == "onnx":
        return OnnxBackend(path, threads=threads, accelerator=accelerator)
    if model_format != "tflite":
        raise UsageError(f"{path} is a {model_format} model; the runtime runs .tflite and .onnx",
                         fix="compress or export it first (edgekit compress / edgekit export)")
    if accelerator == "gpu":
        _require("gpu", "tflite", "use --accelerator cpu, or install the GPU's Vulkan driver and ai-edge-litert")
        return LiteRTCompiledBackend(path, hardware="GPU")
    return TFLiteBackend(path, threads=threads, accelerator=accelerator)


def run_float(model: Path | bytes, inputs: np.ndarray, *, model_format: str = "tflite", threads: int | None = 1,
              accelerator: str = "cpu") -> np.ndarray:
    """Float32 outputs for normalised float inputs: quantized on the way in and dequantized on the way out
    as the model's tensors ask. What export validation, compression and benchmarks compare with their
    parents; ``Predictor`` adds image loading, labels and a softmax for logits on top of the same steps."""
    backend = open_backend(model, model_format, threads=threads, accelerator=accelerator)
    inputs = np.asarray(inputs, dtype=np.float32)
    if not len(inputs):
        return np.zeros((0, *backend.output.shape[1:]), np.float32)
    return backend.output.dequantize(backend.run(backend.input.quantize(inputs)))


def median_latency_ms(model: Path | bytes, *, model_format: str = "tflite", runs: int = 30, warmup: int = 3,
                      threads: int = 1) -> float:
    """Median wall time of one in-process inference (``threads`` threads, default delegates), in milliseconds.

    A quick in-process figure for choosing between candidates; reported latency comes from
    :mod:`edgekit.profiling` (fresh pinned processes, interleaved rounds)."""
    import time

    backend = open_backend(model, model_format, threads=threads, accelerator="cpu")
    sample = np.zeros(tuple(max(int(d), 1) for d in backend.input.shape), dtype=backend.input.dtype)
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        backend.run(sample)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)
