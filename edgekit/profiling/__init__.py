"""Profile a model on devices: latency, peak memory, accuracy loss against its float parent, CI gates.

Everything that can be checked is checked before any measurement: gate expressions, device names,
the model file, and every device's availability (unavailable devices are listed as skipped with
the reason; if none is available the run fails with those reasons).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import DeviceUnavailableError, UsageError

if TYPE_CHECKING:
    from edgekit.importer import ImportOptions

TFLITE_OP_PROFILE_REASON = ("per-op timing is unavailable for .tflite: ai-edge-litert 2.3.0 exposes no op profiler "
                            "to Python, and the benchmark tool it ships (ai_edge_litert/tools/benchmark_litert_model.py) "
                            "times whole-model runs only")


def model_format(path: Path, declared: str) -> str:
    """The file's real format; a .tflite holding the Edge TPU custom op is ``edgetpu-tflite``."""
    from edgekit.runtime.safety import read_model_file

    detected, data = read_model_file(path)
    if detected == "tflite" and (declared == "edgetpu-tflite" or b"edgetpu-custom-op" in data):
        return "edgetpu-tflite"
    return detected


def _measure(device, path: Path, *, threads: int | None, runs: int, warmup: int, budget_s: float | None,
             fmt: str) -> dict:
    from edgekit.runtime.latency import measure_local
    from edgekit.profiling.memory import memory_summary

    if device.transport == "ssh":
        from edgekit.profiling.remote import measure_remote

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
            "op_profile": op_profile, **({"fully_accelerated": raw["fully_accelerated"]}
                                         if "fully_accelerated" in raw else {})}


def _check_options(runs: int, warmup: int, threads: int | None, budget_s: float | None, data: Path | None,
                   rounds: int = 5) -> None:
    from edgekit.options import ProfileOptions

    ProfileOptions(runs=runs, warmup=warmup, threads=threads, budget_s=budget_s, rounds=rounds)
    if data is not None and not Path(data).is_dir():
        raise UsageError(f"--data {data} is not a folder", fix="pass an image folder with one sub-folder per class")


def _profiled_artifact(model: Path, *, labelled: bool, import_options: ImportOptions | None = None):
    """The artifact and its real format; labels/preprocessing when ``labelled`` (accuracy needs them):
    from the manifest, the embedded metadata, else ``import_options`` (a foreign model).
    Refuses formats the profiler cannot run."""
    from edgekit.artifacts import Artifact, load_artifact
    from edgekit.evaluation import with_labels

    artifact = load_artifact(Path(model), require_manifest=False)
    found = with_labels(artifact) if labelled else artifact
    if found is None:
        from edgekit.importer import ImportOptions, describe_model

        found = Artifact(path=artifact.path, manifest=describe_model(artifact.path, import_options or ImportOptions()))
    artifact = found
    fmt = model_format(artifact.path, artifact.manifest.format)
    if fmt not in ("tflite", "onnx", "edgetpu-tflite"):
        raise UsageError(f"{artifact.path} is a {fmt} model; profile runs .tflite and .onnx models",
                         fix="compress or export it first (edgekit compress / edgekit export)")
    return artifact, fmt


def profile(*, model: Path, devices: tuple[str, ...] | list[str] = ("cpu",), data: Path | None = None,
            runs: int = 50, warmup: int = 5, threads: int | None = None, fail_if: tuple[str, ...] | list[str] = (),
            budget_s: float | None = None, report_dir: Path | None = None, parent: Path | None = None,
            import_options: ImportOptions | None = None) -> dict:
    """Profile ``model`` on each device; returns the result dict (``gates`` rows say which held).

    ``parent`` overrides the float parent named in the manifest (e.g. an artifact copied without it).
    A model without a manifest or embedded metadata is measured as it is; for accuracy (``data``) its
    labels and preprocessing come from ``import_options`` (as `edgekit import` would record them).
    Raising on failed gates is left to :func:`edgekit.gates.enforce_gates`, so a caller
    can print or save the result first.
    """
    from edgekit.devices import get_device
    from edgekit.gates import evaluate_gates, parse_gate

    _check_options(runs, warmup, threads, budget_s, data)
    gates = [parse_gate(text) for text in fail_if]
    if data is None and any(g.needs_accuracy for g in gates):
        raise UsageError("accuracy gates need labelled images", fix="pass --data DIR (one sub-folder per class)")
    if parent is not None and data is None:
        raise UsageError("--parent is compared on labelled images", fix="pass --data DIR as well")
    profiles = [get_device(name) for name in dict.fromkeys(devices or ("cpu",))]
    artifact, fmt = _profiled_artifact(model, labelled=data is not None, import_options=import_options)
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
        result["accuracy"] = accuracy_loss(artifact, Path(data), threads=threads, parent=parent,
                                           bound=min(drop_limits) if drop_limits else None)
    result["gates"] = evaluate_gates(gates, result)
    if report_dir is not None:
        from edgekit.profiling.report import write_report

        result["report"] = write_report(result, Path(report_dir))
    return result


def compare(*, models: list[Path], devices: tuple[str, ...] | list[str] = ("cpu",), data: Path | None = None,
            runs: int = 50, warmup: int = 5, rounds: int = 5, threads: int | None = None,
            budget_s: float | None = None, import_options: ImportOptions | None = None) -> dict:
    """Several models measured interleaved (A B A B ..., ``rounds`` rounds, a fresh pinned process each time),
    with each one's p50 latency, size, peak memory (and top-1 on ``data``) as ratios against the first."""
    from edgekit.devices import get_device
    from edgekit.runtime.latency import interleaved_rounds, ratios_to_first
    from edgekit.progress import status

    if len(models) < 2:
        raise UsageError("comparing needs at least two models", fix="pass two or more models, the baseline first")
    _check_options(runs, warmup, threads, budget_s, data, rounds)
    profiles = [get_device(name) for name in dict.fromkeys(devices or ("cpu",))]
    loaded = [_profiled_artifact(model, labelled=data is not None, import_options=import_options) for model in models]
    sizes = [artifact.path.stat().st_size for artifact, _ in loaded]
    result: dict = {"models": [{"model": str(a.path), "format": fmt, "size_bytes": size,
                                "size_ratio": round(size / sizes[0], 4)} for (a, fmt), size in zip(loaded, sizes)],
                    "runs": runs, "warmup": warmup, "rounds": rounds, "budget_s": budget_s,
                    "method": "interleaved rounds (each model once per round, in order), a fresh process per "
                              "measurement pinned to the device's threads; ratios are medians over rounds of "
                              "(model p50 / first model's p50) in the same round, with their min and max",
                    "devices": {}}
    missing = {device.name: "; ".join(dict.fromkeys(reason for ok, reason in (device.available(fmt) for _, fmt in loaded)
                                                    if not ok)) for device in profiles}
    if all(missing.values()):
        reasons = "; ".join(f"{name}: {reason}" for name, reason in missing.items())
        raise DeviceUnavailableError(f"no requested device can run every model here ({reasons})",
                                     fix="pick an available device (`edgekit devices` lists them)")
    for device in profiles:
        if missing[device.name]:
            result["devices"][device.name] = {"status": "skipped", "reason": missing[device.name]}
            continue

        def report(round_index: int, measured: list[dict], name: str = device.name) -> None:
            p50s = ", ".join(f"{m['latency']['p50_ms']:.3f}" for m in measured)
            status(f"[profile] {name} round {round_index + 1}/{rounds}: p50 ms {p50s}")

        measured = interleaved_rounds(
            loaded, lambda item, d=device: _measure(d, item[0].path, threads=threads, runs=runs, warmup=warmup,
                                                    budget_s=budget_s, fmt=item[1]),
            rounds=rounds, on_round=report)
        p50s = [[m["latency"]["p50_ms"] for m in per_model] for per_model in measured]
        ratios = ratios_to_first(p50s)
        result["devices"][device.name] = {"status": "ok", "threads": measured[0][0]["threads"], "models": [
            {"model": str(a.path), "backend": runs_of[0]["backend"],
             "p50_ms": round(statistics.median(own), 4), "p50_min_ms": min(own), "p50_max_ms": max(own),
             "round_p50_ms": own, "p50_ratio": ratio,
             "peak_delta_mib": statistics.median(m["memory"]["peak_delta_mib"] for m in runs_of)
             if all(m["memory"]["peak_delta_mib"] is not None for m in runs_of) else None}
            for (a, _), runs_of, own, ratio in zip(loaded, measured, p50s, ratios)]}
    if data is not None:
        result["accuracy"] = _accuracies(loaded, Path(data), threads=threads)
    return result


def _accuracies(loaded: list, data: Path, *, threads: int | None) -> dict:
    """Top-1 of each model on the same labelled images, and its difference from the first in points."""
    from edgekit.data import load_folder_arrays
    from edgekit.evaluation import labelled_folder, predict_pixels
    from edgekit.metrics import classification_report

    rows = []
    for artifact, _ in loaded:
        labels = artifact.manifest.labels
        folder = labelled_folder(data, labels)
        pixels, truth = load_folder_arrays(folder, artifact.manifest.preprocessing_spec())
        top1 = classification_report(truth, predict_pixels(artifact, pixels, threads=threads), labels)["accuracy"]
        rows.append({"model": str(artifact.path), "images": int(len(truth)), "top1": top1})
    for row in rows:
        row["drop_vs_first_points"] = round((rows[0]["top1"] - row["top1"]) * 100, 3)
    return {"data": str(data.resolve()), "models": rows}
