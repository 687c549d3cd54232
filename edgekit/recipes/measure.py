"""Measure every built variant on every device: accuracy on the test images, latency, size.

Accuracy is a property of the artifact (measured once, with the light runtime, on the test split
and cached by artifact hash + data fingerprint); latency is measured per device with the
profiler's fresh-subprocess harness. Unavailable devices and failed variants become rows whose
``status`` says why.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from edgekit.artifacts import Artifact, sha256_file, write_json_atomic
from edgekit.errors import DeviceUnavailableError, EdgekitError, SparsePatternError
from edgekit.progress import status


def outcome_status(exc: EdgekitError) -> str:
    """A row's status for a stage or measurement that raised: absent hardware or tools are ``unavailable``
    (reported, not a failure of the run), as is a latency-pruned variant of a backbone outside XNNPACK's
    sparse pattern; anything else ``failed``."""
    kind = "unavailable" if isinstance(exc, (DeviceUnavailableError, SparsePatternError)) else "failed"
    return f"{kind}: {exc.one_line()}"


def _cached(path: Path, compute) -> dict:
    import json

    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    value = compute()
    write_json_atomic(path, value)
    return value


def _predictions(artifact: Artifact, test_dir: Path, max_images: int | None) -> dict:
    from edgekit.data import calibration_sample, load_folder_arrays
    from edgekit.evaluation import labelled_folder, predict_pixels
    from edgekit.metrics import classification_report

    folder = labelled_folder(test_dir, artifact.manifest.labels)
    if max_images:
        folder = calibration_sample(folder, max_images, seed=0)
    pixels, truth = load_folder_arrays(folder, artifact.manifest.preprocessing_spec())
    probabilities = predict_pixels(artifact, pixels, threads=1)
    report = classification_report(truth, probabilities, artifact.manifest.labels)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "count": report["count"],
            "predicted": probabilities.argmax(1).tolist(), "truth": np.asarray(truth).tolist()}


def _change_columns(reference: dict, accuracy: dict, labels: list[str]) -> dict:
    """The row's accuracy-loss columns (positive = loss) from the two models' cached predictions."""
    from edgekit.metrics import accuracy_change

    one_hot = np.eye(len(labels))
    change = accuracy_change(np.array(reference["truth"]), one_hot[reference["predicted"]],
                             one_hot[accuracy["predicted"]], labels)
    worst = change["worst_class_recall_drop"] or {}
    return {"accuracy_drop_pts": change["drop_points"], "accuracy_drop_ci95": change["interval95_points"],
            "accuracy_drop_upper95": change["upper95_points"], "accuracy_images": change["images"],
            "top1_agreement": change["top1_agreement"], "worst_class": worst.get("class"),
            "worst_class_recall_drop_pts": worst.get("points")}


def measure_all(*, float_artifact: Artifact, artifacts: dict[str, Artifact | str], devices: list[str],
                test_dir: Path | None, out_dir: Path, runs: int, warmup: int, threads: int | None,
                max_images: int | None, force: bool = False) -> tuple[list[dict], float | None]:
    """One row per (variant, device); returns the rows and the float model's test accuracy."""
    from edgekit.devices import get_device
    from edgekit.profiling import profile
    from edgekit.data import folder_fingerprint

    cache = out_dir / "measurements"
    test_key = folder_fingerprint(test_dir) if test_dir else None
    reference = None
    if test_dir is not None:
        reference = _cached(cache / f"accuracy2-{float_artifact.manifest.sha256[:16]}-{test_key}-{max_images}.json",
                            lambda: _predictions(float_artifact, test_dir, max_images)) if not force else \
            _predictions(float_artifact, test_dir, max_images)
    profiles = [get_device(name) for name in devices]
    rows: list[dict] = []
    for name, artifact in artifacts.items():
        if isinstance(artifact, str):
            rows.extend({"variant": name, "device": d.name, "status": artifact} for d in profiles)
            continue
        size = artifact.path.stat().st_size
        base = {"variant": name, "format": artifact.manifest.format, "path": str(artifact.path),
                "size_mb": round(size / 1e6, 4),
                "gzip_mb": round(len(gzip.compress(artifact.path.read_bytes(), 9)) / 1e6, 4)}
        sha = sha256_file(artifact.path)[:16]
        accuracy: dict | None = None
        if test_dir is not None and artifact.manifest.format in ("tflite", "onnx"):
            try:
                accuracy = _cached(cache / f"accuracy2-{sha}-{test_key}-{max_images}.json",
                                   lambda a=artifact: _predictions(a, test_dir, max_images))
            except EdgekitError as exc:
                base["accuracy_error"] = exc.one_line()
        if accuracy is not None:
            base["accuracy"] = accuracy["accuracy"]
            if reference is not None:
                base.update(_change_columns(reference, accuracy, artifact.manifest.labels))
        for device in profiles:
            row = dict(base, device=device.name)
            ok, reason = device.available(artifact.manifest.format)
            if not ok:
                rows.append(row | {"status": f"skipped: {reason}", "accuracy": None})
                continue
            status(f"[measure] {name} on {device.name}")
            key = cache / f"latency-{sha}-{device.name}-{runs}-{warmup}-{threads}.json"
            try:
                measured = _cached(key, lambda a=artifact, d=device: profile(
                    model=a.path, devices=[d.name], runs=runs, warmup=warmup, threads=threads)["devices"][d.name])
            except EdgekitError as exc:
                rows.append(row | {"status": outcome_status(exc), "accuracy": None})
                continue
            if measured.get("status") != "ok":
                rows.append(row | {"status": f"skipped: {measured.get('reason')}", "accuracy": None})
                continue
            latency = measured["latency"]
            rows.append(row | {"status": "ok", "p50_ms": latency["p50_ms"], "p90_ms": latency.get("p90_ms"),
                               "threads": measured.get("threads"), "backend": measured.get("backend"),
                               "peak_memory_mib": (measured.get("memory") or {}).get("peak_delta_mib")})
    return rows, (reference or {}).get("accuracy")
