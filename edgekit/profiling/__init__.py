"""Profile a model on devices: latency, peak memory, accuracy loss against its float parent, CI gates.

Everything that can be checked is checked before any measurement: gate expressions, device names,
the model file, and every device's availability (unavailable devices are listed as skipped with
the reason; if none is available the run fails with those reasons).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from edgekit.errors import DeviceUnavailableError, UsageError

TFLITE_OP_PROFILE_REASON = ("per-op timing is unavailable for .tflite: ai-edge-litert 2.3.0 exposes no op profiler "
                            "to Python, and the benchmark tool it ships (ai_edge_litert/tools/benchmark_litert_model.py) "
                            "times whole-model runs only")


def model_format(path: Path, declared: str) -> str:
    """The file's real format; a .tflite holding the Edge TPU custom op is ``edgetpu-tflite``."""
    from edgekit.runtime.safety import check_model_file

    detected = check_model_file(path)
    if detected == "tflite" and (declared == "edgetpu-tflite" or b"edgetpu-custom-op" in Path(path).read_bytes()):
        return "edgetpu-tflite"
    return detected


def _measure(device, path: Path, *, threads: int | None, runs: int, warmup: int, budget_s: float | None,
             fmt: str) -> dict:
    from edgekit.profiling.latency import measure_local
    from edgekit.profiling.memory import memory_summary

    if device.transport == "ssh":
        from edgekit.devices.ssh import measure_remote

        raw = measure_remote(device, path, threads=threads or device.threads or 0, runs=runs, warmup=warmup,
                             budget_s=budget_s)
        op_profile = {"reason": "per-op timing is measured for local devices only"}
    else:
        op_dir = tempfile.mkdtemp(prefix="edgekit-ops-") if fmt == "onnx" else None
        try:
            raw = measure_local(path, accelerator=device.accelerator, threads=device.resolved_threads(threads),
                                runs=runs, warmup=warmup, budget_s=budget_s, op_profile_dir=op_dir)
        finally:
            if op_dir:
                shutil.rmtree(op_dir, ignore_errors=True)
        op_profile = raw.get("op_profile") or {"reason": TFLITE_OP_PROFILE_REASON}
        op_profile.pop("trace", None)
        raw.setdefault("transport", "local")
    return {"status": "ok", "backend": raw["backend"], "accelerator": raw["accelerator"], "threads": raw["threads"],
            "transport": raw["transport"], "python": raw["python"], "input_shape": raw["input_shape"],
            "input_dtype": raw["input_dtype"], "init_ms": raw["init_ms"],
            "first_inference_ms": raw["first_inference_ms"], "warmup_runs": raw["warmup_runs"],
            "latency": raw["stats"], "times_ms": raw["times_ms"], "memory": memory_summary(raw, path),
            "op_profile": op_profile}


def profile(*, model: Path, devices: tuple[str, ...] | list[str] = ("cpu",), data: Path | None = None,
            runs: int = 50, warmup: int = 5, threads: int | None = None, fail_if: tuple[str, ...] | list[str] = (),
            budget_s: float | None = None, report_dir: Path | None = None) -> dict:
    """Profile ``model`` on each device; returns the result dict (``gates`` rows say which held).

    Raising on failed gates is left to :func:`edgekit.profiling.gates.enforce_gates`, so a caller
    can print or save the result first.
    """
    from edgekit.artifacts import load_artifact
    from edgekit.devices import get_device
    from edgekit.profiling.gates import evaluate_gates, parse_gate

    if runs < 1 or warmup < 0 or (threads is not None and threads < 1) or (budget_s is not None and budget_s <= 0):
        raise UsageError(f"--runs {runs} / --warmup {warmup} / --threads {threads} out of range",
                         fix="use --runs >= 1, --warmup >= 0, --threads >= 1")
    gates = [parse_gate(text) for text in fail_if]
    if data is None and any(g.needs_accuracy for g in gates):
        raise UsageError("accuracy gates need labelled images", fix="pass --data DIR (one sub-folder per class)")
    profiles = [get_device(name) for name in dict.fromkeys(devices or ("cpu",))]
    artifact = load_artifact(Path(model), require_manifest=False)
    fmt = model_format(artifact.path, artifact.manifest.format)
    if fmt not in ("tflite", "onnx", "edgetpu-tflite"):
        raise UsageError(f"{artifact.path} is a {fmt} model; profile runs .tflite and .onnx models",
                         fix="compress or export it first (edgekit compress / edgekit export)")
    if data is not None and not Path(data).is_dir():
        raise UsageError(f"--data {data} is not a folder", fix="pass an image folder with one sub-folder per class")
    availability = {p.name: p.available(fmt) for p in profiles}
    if not any(ok for ok, _ in availability.values()):
        reasons = "; ".join(f"{name}: {reason}" for name, (ok, reason) in availability.items())
        raise DeviceUnavailableError(f"no requested device can run {artifact.path.name} here ({reasons})",
                                     fix="pick an available device (`edgekit devices` lists them)")
    result: dict = {"model": str(artifact.path), "format": fmt, "runs": runs, "warmup": warmup,
                    "budget_s": budget_s, "devices": {}}
    for device in profiles:
        ok, reason = availability[device.name]
        if not ok:
            result["devices"][device.name] = {"status": "skipped", "reason": reason}
            continue
        result["devices"][device.name] = _measure(device, artifact.path, threads=threads, runs=runs, warmup=warmup,
                                                  budget_s=budget_s, fmt=fmt)
    if data is not None:
        from edgekit.profiling.accuracy import accuracy_loss

        drop_limits = [g.limit for g in gates if g.metric in ("accuracy_drop", "accuracy_drop_upper95")]
        result["accuracy"] = accuracy_loss(artifact, Path(data), threads=threads,
                                           bound=min(drop_limits) if drop_limits else None)
    result["gates"] = evaluate_gates(gates, result)
    if report_dir is not None:
        from edgekit.profiling.report import write_report

        result["report"] = write_report(result, Path(report_dir))
    return result
