"""Peak memory of a model run, from the runner's VmHWM readings in a fresh process.

The runner reads ``VmHWM`` (peak resident set size) from ``/proc/self/status`` once after
importing the runtime (the baseline: Python + numpy + runtime libraries) and once after loading the
model and running the first inference. The delta is what the model itself costs; a fresh process
keeps it repeatable (within ~0.2 MiB on this machine).
"""

from __future__ import annotations

from pathlib import Path

MIB = 1024 * 1024
ACTIVATION_NOTE = ("estimate: sum of non-constant tensor sizes in the .tflite graph; the arena planner reuses "
                   "memory between tensors, so the real arena is at most this")


def memory_summary(measured: dict, model: Path) -> dict:
    """Baseline / peak / delta in MiB, model file size and the activation estimate from a runner result."""
    raw = measured.get("memory", {})
    baseline, peak = raw.get("baseline_peak_kib"), raw.get("peak_kib")
    activations = raw.get("activation_bytes_estimate")
    summary = {
        "baseline_peak_mib": round(baseline / 1024, 2) if baseline is not None else None,
        "peak_rss_mib": round(peak / 1024, 2) if peak is not None else None,
        "peak_delta_mib": round((peak - baseline) / 1024, 2) if None not in (peak, baseline) else None,
        "model_file_mib": round(Path(model).stat().st_size / MIB, 3),
        "activation_mib_estimate": round(activations / MIB, 3) if activations is not None else None,
    }
    summary["activation_note"] = ACTIVATION_NOTE if activations is not None else \
        "not exposed by this runtime (onnxruntime has no arena query)"
    if peak is None:
        summary["note"] = "VmHWM unavailable (not Linux): peak memory not measured"
    return summary
