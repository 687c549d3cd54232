"""Self-contained latency + memory measurement, run as a script in a fresh process (locally or on a device).

Why a script: numbers taken inside the parent would include TensorFlow, other models and the
parent's allocator history. This file imports only the standard library and numpy at top level,
so it can be copied to a remote device (SFTP) and run there with that device's Python; the
inference runtime is chosen by ``--backend``:

- ``edgekit``: ``edgekit.runtime.backends.open_backend`` (local only: handles GPU / Edge TPU accelerators),
- ``ai_edge_litert`` / ``tflite_runtime`` / ``onnxruntime``: the bare runtime (what a device has),
- ``auto``: the first bare runtime that imports for the model's format.

It prints one JSON object on stdout: timings (init, first inference, warm-up, timed runs, stats),
peak RSS (VmHWM) after importing the runtime and after load + first inference, and an activation
size estimate. Errors are printed as ``{"error": ..., "kind": ...}`` with exit code 3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

EXIT_RUNTIME_MISSING = 3
EXIT_FAILED = 4
# onnxruntime input type -> numpy dtype name; the same map as edgekit.runtime.backends.ORT_DTYPES (a test
# checks), written out here because this script imports nothing from edgekit.
ORT_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
              "tensor(float16)": "float16", "tensor(double)": "float64"}


def read_status_kib(field: str = "VmHWM") -> int | None:
    """A ``/proc/self/status`` field in KiB (peak resident set size by default); None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def summarize(times_ms: list[float]) -> dict:
    """min / mean / std / p50 / p90 / p99 / max in milliseconds (linear-interpolated percentiles)."""
    import numpy as np

    values = np.asarray(times_ms, dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"count": int(values.size), "min_ms": float(values.min()), "mean_ms": float(values.mean()),
            "std_ms": float(values.std(ddof=1)) if values.size > 1 else 0.0, "p50_ms": float(p50),
            "p90_ms": float(p90), "p99_ms": float(p99), "max_ms": float(values.max())}


class RuntimeMissing(Exception):
    """No usable inference runtime for this model on this machine."""


def _import_runtime(backend: str, model_format: str):
    """Import the requested runtime; returns (name, module). Raises RuntimeMissing with what was tried."""
    if backend == "edgekit":
        from edgekit.runtime.backends import open_backend

        return "edgekit", open_backend
    if model_format == "onnx":
        candidates = ["onnxruntime"] if backend in ("auto", "onnxruntime") else []
    else:
        candidates = ["ai_edge_litert", "tflite_runtime"] if backend == "auto" else [backend]
    tried = []
    for name in candidates:
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert import interpreter as module
            elif name == "tflite_runtime":
                from tflite_runtime import interpreter as module
            elif name == "onnxruntime":
                import onnxruntime as module
            else:
                tried.append(f"{name} (not a runtime for .{model_format})")
                continue
            return name, module
        except ImportError as exc:
            tried.append(f"{name} ({exc})")
    raise RuntimeMissing(f"no runtime for .{model_format} models: tried {', '.join(tried) or backend}")


class _Session:
    """One loaded model behind a uniform ``run(batch)``; ``inputs`` is a ready-to-feed batch."""

    def __init__(self, backend: str, module, model: str, threads: int, accelerator: str):
        import numpy as np

        self.backend = backend
        self.activation_bytes = None
        self.fully_accelerated = None  # known for LiteRT's CompiledModel (the GPU path) only
        self._op_profile_file = None
        if backend == "edgekit":  # the runtime's backend layer: no labels or preprocessing needed
            from pathlib import Path

            from edgekit.runtime.safety import check_model_file

            self._backend = module(Path(model), check_model_file(model), threads=threads, accelerator=accelerator)
            self.backend = f"edgekit:{self._backend.name}"
            self.inputs = _zeros(np, self._backend.input.shape, self._backend.input.dtype)
            self.run = self._backend.run
            self.activation_bytes = _litert_activation_bytes(model) if model.endswith(".tflite") else None
            self.fully_accelerated = getattr(self._backend, "fully_accelerated", None)
        elif backend == "onnxruntime":
            options = module.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = module.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            meta = self._session.get_inputs()[0]
            dtype = ORT_DTYPES.get(meta.type, "float32")
            self._name = meta.name
            self.inputs = _zeros(np, [d if isinstance(d, int) else 1 for d in meta.shape], dtype)
            self.run = lambda batch: self._session.run(None, {self._name: batch})[0]
        else:
            kwargs = {"model_path": model, "num_threads": threads}
            if accelerator == "cpu-reference":
                kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            self._interpreter = module.Interpreter(**kwargs)
            self._interpreter.allocate_tensors()
            detail = self._interpreter.get_input_details()[0]
            self._input_index = detail["index"]
            self._output_index = self._interpreter.get_output_details()[0]["index"]
            self.inputs = _zeros(np, list(detail["shape"]), detail["dtype"])
            self.run = self._invoke
            self.activation_bytes = _litert_activation_bytes(model)

    def _invoke(self, batch):
        self._interpreter.set_tensor(self._input_index, batch)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output_index)


def _zeros(np, shape, dtype):
    """A deterministic mid-range input (zeros would let some kernels take shortcuts)."""
    shape = [int(d) if int(d) > 0 else 1 for d in shape]
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return np.random.default_rng(0).integers(0, 100, size=shape).astype(dtype)
    return np.random.default_rng(0).uniform(-1, 1, size=shape).astype(dtype)


def _litert_activation_bytes(model: str) -> int | None:
    """Sum of non-constant tensor sizes of subgraph 0: an upper-bound estimate of the activation arena.

    This script's own small flatbuffer reader (it is copied to devices); edgekit's is
    :mod:`edgekit.runtime.tflite_file`, and a test checks that the two agree. Constant tensors are
    those whose flatbuffer buffer holds data. The arena planner reuses memory
    between tensors whose lifetimes do not overlap, so the real arena is usually smaller.
    """
    # LiteRT's own reader first, as on a bare LiteRT board, so a local and a remote run of the same model
    # import the same modules and their peak-memory deltas compare; edgekit's vendored subset where
    # LiteRT is absent (a tflite-runtime install of edgekit).
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from edgekit.runtime import tflite_schema as schema
        except ImportError:
            return None
    sizes = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4, 16: 2}  # TensorType -> bytes
    with open(model, "rb") as handle:
        root = schema.Model.GetRootAs(handle.read(), 0)
    graph = root.Subgraphs(0)
    total = 0
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        buffer = root.Buffers(tensor.Buffer())
        if buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1):
            continue
        count = 1
        for dim in tensor.ShapeAsNumpy() if tensor.ShapeLength() else []:
            count *= max(int(dim), 1)
        total += count * sizes.get(tensor.Type(), 4)
    return total


def onnx_op_profile(model: str, threads: int, runs: int, out_dir: str, top: int = 15) -> dict:
    """Per-node times from onnxruntime's ``enable_profiling`` trace, summed per op type, slowest first."""
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(out_dir, "ort_profile")
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    dtype = ORT_DTYPES.get(meta.type, "float32")
    batch = _zeros(np, [d if isinstance(d, int) else 1 for d in meta.shape], dtype)
    for _ in range(runs):
        session.run(None, {meta.name: batch})
    trace_path = session.end_profiling()
    with open(trace_path, encoding="utf-8") as handle:
        events = json.load(handle)
    per_op: dict[str, dict] = {}
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        entry = per_op.setdefault(args.get("op_name", "?"), {"op": args.get("op_name", "?"), "total_us": 0, "calls": 0})
        entry["total_us"] += int(event.get("dur", 0))
        entry["calls"] += 1
    total = sum(e["total_us"] for e in per_op.values()) or 1
    ops = sorted(per_op.values(), key=lambda e: -e["total_us"])[:top]
    for entry in ops:
        entry["ms_per_run"] = entry["total_us"] / 1000 / runs
        entry["share"] = entry["total_us"] / total
    return {"source": "onnxruntime enable_profiling", "runs": runs, "trace": trace_path, "ops": ops}


def measure(model: str, *, backend: str, accelerator: str, threads: int, runs: int, warmup: int,
            budget_s: float | None, op_profile_dir: str | None = None) -> dict:
    """The whole measurement; see the module docstring for what is returned."""
    model_format = "onnx" if model.endswith(".onnx") else "tflite"
    try:
        import numpy  # noqa: F401  (part of the baseline: every runtime needs it)
    except ImportError as exc:
        raise RuntimeMissing(f"numpy is not installed ({exc})") from exc
    if threads <= 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    name, module = _import_runtime(backend, model_format)
    baseline_kib = read_status_kib()
    start = time.perf_counter()
    session = _Session(name, module, model, threads, accelerator)
    init_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    session.run(session.inputs)
    first_ms = (time.perf_counter() - start) * 1000
    after_kib = read_status_kib()
    for _ in range(warmup):
        session.run(session.inputs)
    times: list[float] = []
    cpu_times: list[float] = []  # this thread's CPU time: what the inference cost, whatever else the machine runs
    deadline = time.perf_counter() + budget_s if budget_s else None
    while (len(times) < runs) if deadline is None else (not times or time.perf_counter() < deadline):
        start, cpu_start = time.perf_counter(), time.thread_time()
        session.run(session.inputs)
        times.append((time.perf_counter() - start) * 1000)
        cpu_times.append((time.thread_time() - cpu_start) * 1000)
    result = {
        "backend": session.backend, "accelerator": accelerator, "threads": threads,
        "input_shape": list(session.inputs.shape), "input_dtype": str(session.inputs.dtype),
        "init_ms": init_ms, "first_inference_ms": first_ms, "warmup_runs": warmup,
        "stats": summarize(times), "times_ms": times, "cpu_stats": summarize(cpu_times),
        "memory": {"baseline_peak_kib": baseline_kib, "peak_kib": after_kib,
                   "activation_bytes_estimate": session.activation_bytes},
        "python": sys.version.split()[0],
    }
    if session.fully_accelerated is not None:
        result["fully_accelerated"] = session.fully_accelerated
    if op_profile_dir and model_format == "onnx":
        result["op_profile"] = onnx_op_profile(model, threads, max(runs // 5, 5), op_profile_dir)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="0: every usable core")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--op-profile-dir", default=None)
    args = parser.parse_args(argv)
    try:
        result = measure(args.model, backend=args.backend, accelerator=args.accelerator, threads=args.threads,
                         runs=args.runs, warmup=args.warmup, budget_s=args.budget_s,
                         op_profile_dir=args.op_profile_dir)
    except RuntimeMissing as exc:
        print(json.dumps({"error": str(exc), "kind": "runtime_missing"}))
        return EXIT_RUNTIME_MISSING
    except Exception as exc:  # reported to the parent as data, not a traceback on a remote terminal
        if getattr(exc, "fix", None):  # an edgekit error: its own message and fix, not a second fix around them
            print(json.dumps({"error": exc.message, "fix": exc.fix, "kind": "failed"}))
        else:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "kind": "failed"}))
        return EXIT_FAILED
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
