"""Monitoring after deployment: compare the device's prediction log with the model's reference profile.

- :func:`write_reference_profile` (``reference.py``): every stage that makes a model calls it.
- :func:`monitor`: the drift report behind ``edgekit monitor`` (numpy only; plots need matplotlib).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import DataError, UsageError
from edgekit.monitoring.reference import REFERENCE_FILE, load_reference_profile, write_reference_profile

__all__ = ["REFERENCE_FILE", "gate_metrics", "load_reference_profile", "monitor", "write_reference_profile"]

# gate name -> where its value lives in the result; psi_<feature> gates are added per feature
_GATE_PATHS: dict[str, tuple[str, ...]] = {
    "drifted_signals": ("summary", "drifted_signals_count"),
    "max_psi": ("summary", "max_psi"),
    "mean_confidence": ("prediction", "mean_confidence"),
    "confidence_shift": ("prediction", "confidence_shift"),
    "low_confidence_rate": ("prediction", "low_confidence_rate", "rate"),
    "class_pvalue": ("prediction", "predicted_class", "pvalue"),
    "class_shift": ("prediction", "predicted_class", "total_variation"),
    "latency_p50_ms": ("latency", "overall", "p50_ms"),
    "latency_p90_ms": ("latency", "overall", "p90_ms"),
    "latency_p99_ms": ("latency", "overall", "p99_ms"),
    "rows": ("rows",),
}


def gate_metrics() -> dict[str, tuple[str, ...]]:
    """Every ``--fail-if`` name ``edgekit monitor`` accepts, with its path in the result."""
    from edgekit.runtime.predlog import INPUT_FEATURES, SCORE_FEATURES

    return _GATE_PATHS | {f"psi_{name}": ("features", name, "psi") for name in (*INPUT_FEATURES, *SCORE_FEATURES)}


def monitor(*, log: Path, model: Path | None = None, reference: Path | None = None, out_dir: Path | None = None,
            thresholds: dict[str, float] | None = None, window_s: float = 3600.0,
            fail_if: tuple[str, ...] = (), last: int | None = None) -> dict[str, Any]:
    """Drift report of a prediction log against a model's reference profile.

    ``model``: the artifact (its ``reference_profile.json`` is used); ``reference``: a reference
    profile file, or a folder of images like the training data (for a model edgekit did not make;
    with ``model`` its scores are profiled too). ``last`` keeps only the newest N rows. Gates are
    evaluated but not enforced: call :func:`edgekit.profiling.gates.enforce_gates` on the result.
    """
    from edgekit.monitoring.drift import analyze
    from edgekit.profiling.gates import lookup, parse_gate
    from edgekit.runtime.predlog import read_log

    metrics = gate_metrics()
    gates = [parse_gate(text, metrics=metrics, example="drifted_signals>0") for text in fail_if]
    if window_s <= 0:
        raise UsageError(f"--window {window_s} must be positive", fix="e.g. --window 3600 (one hour)")
    profile, described = _reference(model, reference)
    rows = read_log(log)
    if last is not None:
        rows = {name: values[-last:] for name, values in rows.items()}
    if not len(rows["time"]):
        raise DataError(f"{log} holds no predictions yet", fix="log some first: edgekit predict MODEL IMAGES --log LOG")
    rows, excluded = _rows_of_model(rows, profile.get("model_sha256", ""), log)
    result = {"log": str(log), "reference": described, "model_sha256": profile.get("model_sha256", ""),
              "rows_excluded": excluded, **analyze(rows, profile, thresholds=thresholds, window_s=window_s)}
    result["gates"] = []
    for gate in gates:
        value = lookup(result, metrics[gate.metric])
        result["gates"].append({"gate": str(gate), "device": "-", "value": value, "unit": "",
                                "failed": value is None or _holds(gate, value),
                                "reason": "not measured" if value is None else ""})
    if out_dir is not None:
        from edgekit.artifacts import check_output_dir
        from edgekit.monitoring.report import write_monitor_report

        result["report"] = write_monitor_report(result, profile, rows, check_output_dir(out_dir, inputs=(Path(log),)))
    return result


def _holds(gate, value: float) -> bool:
    from edgekit.profiling.gates import OPERATORS

    return bool(OPERATORS[gate.op](value, gate.limit))


def _reference(model: Path | None, reference: Path | None) -> tuple[dict, str]:
    """The reference profile and how it was found."""
    if reference is None:
        if model is None:
            raise UsageError("monitor needs --model ARTIFACT (with its reference profile) or --reference",
                             fix="pass the model that wrote the log, or --reference DATA (images like the training data)")
        from edgekit.artifacts import load_artifact

        artifact = load_artifact(Path(model), require_manifest=False)
        profile = load_reference_profile(artifact.directory / REFERENCE_FILE)
        if artifact.manifest.sha256 and profile["model_sha256"] != artifact.manifest.sha256:
            from edgekit.errors import ManifestError

            raise ManifestError(f"{artifact.directory / REFERENCE_FILE} was made for another model than {artifact.path}",
                                fix="re-run the stage that made the model, or pass --reference DATA")
        return profile, str(artifact.directory / REFERENCE_FILE)
    reference = Path(reference).expanduser()
    if reference.is_file():
        return load_reference_profile(reference), str(reference)
    if not reference.is_dir():
        raise UsageError(f"--reference {reference} does not exist", fix="pass a reference_profile.json or an image folder")
    if model is None:
        raise UsageError(f"--reference {reference} is an image folder: it needs --model to know the input size",
                         fix="pass --model MODEL (the .tflite/.onnx that wrote the log) with --reference DATA")
    from edgekit.monitoring.reference import reference_from_images
    from edgekit.runtime import Predictor

    predictor = Predictor(model, threads=1)
    return reference_from_images(reference, model=predictor), f"{reference} (images, profiled now)"


def _rows_of_model(rows: dict, sha256: str, log: Path) -> tuple[dict, int]:
    """Only the rows written by the reference's model (a log may hold several models' rows)."""
    if not sha256 or not len(rows["time"]):
        return rows, 0
    keep = np.array([value == sha256 for value in rows["model_sha256"]], dtype=bool)
    if not keep.any():
        found = sorted({value[:12] for value in rows["model_sha256"]})
        raise UsageError(f"none of the {len(keep)} rows in {log} were written by the reference's model "
                         f"(sha256 {sha256[:12]}...; the log has {', '.join(found)}...)",
                         fix="pass the --model that wrote the log, or --reference DATA with that model")
    picked = {name: (values[keep] if isinstance(values, np.ndarray) else [v for v, k in zip(values, keep) if k])
              for name, values in rows.items()}
    return picked, int((~keep).sum())
