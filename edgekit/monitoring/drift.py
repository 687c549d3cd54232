"""Compare a prediction log with a reference profile: per-feature drift and prediction health.

A feature *drifts* when both hold (defaults in :data:`DEFAULT_THRESHOLDS`, each overridable):
- the two-sample Kolmogorov-Smirnov p-value is below ``pvalue`` (the shift is not sampling noise), and
- the population stability index is at least ``psi`` (the shift is large enough to matter).
Requiring both keeps a few hundred rows from flagging noise and a million rows from flagging
trivia. Wasserstein distance is reported too, in the feature's units and in reference standard
deviations. The predicted-class mix is compared with a chi-square test of homogeneity, the
low-confidence rate with a two-proportion z-test; latency percentiles are given per time window.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgekit.errors import UsageError
from edgekit.monitoring import stats
from edgekit.runtime.predlog import INPUT_FEATURES, SCORE_FEATURES

DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.2,  # PSI >= 0.2: the conventional "significant shift" bound
    "pvalue": 0.001,  # KS p-value below this; ~12 features -> <= ~1.2% family-wise false alarms (Bonferroni)
    "class_pvalue": 0.01,  # chi-square p-value of the predicted-class mix below this (one test: ~1% false alarms)
    "class_shift": 0.1,  # ... and total variation distance of the class shares at least this
    "low_confidence": 0.5,  # a prediction whose top-1 score is below this is "low confidence"
    "low_confidence_pvalue": 0.001,  # z-test p-value of the low-confidence rate below this ...
    "low_confidence_increase": 0.1,  # ... and the rate at least this much above the reference's
    "min_rows": 50,  # fewer rows than this: statistics are reported, nothing is flagged
}
THRESHOLD_HELP = {
    "psi": "minimum population stability index for a feature to drift",
    "pvalue": "Kolmogorov-Smirnov p-value below which a feature's shift is not noise",
    "class_pvalue": "chi-square p-value below which the predicted-class mix changed",
    "class_shift": "minimum total variation distance between predicted-class shares",
    "low_confidence": "top-1 score below which a prediction counts as low-confidence",
    "low_confidence_pvalue": "z-test p-value below which the low-confidence rate changed",
    "low_confidence_increase": "minimum rise of the low-confidence rate over the reference",
    "min_rows": "fewer logged rows than this are reported but never flagged",
}
FEATURE_GROUPS = {**{name: "input" for name in INPUT_FEATURES}, **{name: "model" for name in SCORE_FEATURES}}
PERCENTILES = (50, 90, 99)


def parse_thresholds(items: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``["psi=0.25", "pvalue=0.01"]`` -> the defaults with those replaced; unknown names are usage errors."""
    thresholds = dict(DEFAULT_THRESHOLDS)
    for item in items:
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in thresholds:
            raise UsageError(f"--threshold {item!r}: unknown name {name!r}",
                             fix=f"use NAME=VALUE with NAME in {', '.join(thresholds)}")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not math.isfinite(number) or number < 0:
            raise UsageError(f"--threshold {item!r}: the value must be a non-negative number",
                             fix=f"e.g. --threshold {name}={DEFAULT_THRESHOLDS[name]:g}")
        thresholds[name] = number
    return thresholds


def analyze(rows: dict, reference: dict, *, thresholds: dict[str, float] | None = None,
            window_s: float = 3600.0) -> dict[str, Any]:
    """The drift report's data: per-feature statistics, prediction health, latency windows, verdict."""
    thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    count = len(rows["time"])
    enough = count >= thresholds["min_rows"]
    features = {}
    for name, group in FEATURE_GROUPS.items():
        source = reference["input"]["values"] if group == "input" else reference.get("scores", {}).get("values", {})
        if name not in source:
            continue
        features[name] = _feature_drift(np.asarray(source[name], dtype=np.float64), rows[name], thresholds, enough)
        features[name]["group"] = group
    prediction = _prediction_health(rows, reference, thresholds, enough)
    signals = [name for name, feature in features.items() if feature["drifted"]]
    signals += [name for name in ("predicted_class", "low_confidence_rate")
                if prediction.get(name, {}).get("drifted")]
    psis = [f["psi"] for f in features.values() if math.isfinite(f["psi"])]
    return {
        "rows": count,
        "time_range": [float(np.min(rows["time"])), float(np.max(rows["time"]))] if count else None,
        "thresholds": thresholds,
        "features": features,
        "prediction": prediction,
        "latency": latency_windows(rows["time"], rows["latency_ms"], window_s),
        "summary": {"drift": bool(signals), "drifted_signals": signals, "drifted_signals_count": len(signals),
                    "max_psi": max(psis) if psis else None, "enough_rows": enough},
    }


def _feature_drift(reference: np.ndarray, current: np.ndarray, thresholds: dict, enough: bool) -> dict[str, Any]:
    psi = stats.psi(reference, current)
    ks, pvalue = stats.ks_2samp(reference, current)
    distance = stats.wasserstein(reference, current)
    finite = reference[np.isfinite(reference)]
    spread = float(finite.std()) if len(finite) else float("nan")
    ref_mean, cur_mean = _mean(reference), _mean(current)
    drifted = bool(enough and pvalue < thresholds["pvalue"] and psi >= thresholds["psi"])
    return {"psi": psi, "ks": ks, "pvalue": pvalue, "wasserstein": distance,
            "wasserstein_std": distance / spread if spread > 0 else float("nan"),
            "reference_mean": ref_mean, "current_mean": cur_mean, "drifted": drifted}


def _prediction_health(rows: dict, reference: dict, thresholds: dict, enough: bool) -> dict[str, Any]:
    scores = reference.get("scores")
    confidence = np.asarray(rows["confidence"], dtype=np.float64)
    cut = thresholds["low_confidence"]
    health: dict[str, Any] = {"mean_confidence": _mean(confidence)}
    low_now = int(np.sum(confidence < cut))
    health["low_confidence_rate"] = {"threshold": cut, "rate": low_now / len(confidence) if len(confidence) else None}
    if not scores:
        health["note"] = "the reference has no held-out scores (input statistics only)"
        return health
    ref_confidence = np.asarray(scores["values"]["confidence"], dtype=np.float64)
    health["reference_mean_confidence"] = _mean(ref_confidence)
    health["confidence_shift"] = health["mean_confidence"] - health["reference_mean_confidence"]
    low_ref = int(np.sum(ref_confidence < cut))
    rate_ref = low_ref / len(ref_confidence)
    pvalue = stats.two_proportion_pvalue(low_now, len(confidence), low_ref, len(ref_confidence))
    rate = health["low_confidence_rate"]["rate"]
    health["low_confidence_rate"].update({
        "reference_rate": rate_ref, "pvalue": pvalue,
        "drifted": bool(enough and rate is not None and pvalue < thresholds["low_confidence_pvalue"]
                        and rate - rate_ref >= thresholds["low_confidence_increase"])})
    labels = list(scores["predicted_counts"])
    ref_counts = np.array([scores["predicted_counts"][label] for label in labels], dtype=np.float64)
    index = {label: i for i, label in enumerate(labels)}
    cur_counts = np.zeros(len(labels))
    unknown = 0
    for label in rows["top1"]:
        if label in index:
            cur_counts[index[label]] += 1
        else:
            unknown += 1
    statistic, pvalue, dof = stats.chi2_contingency(ref_counts, cur_counts)
    ref_share = ref_counts / max(ref_counts.sum(), 1)
    cur_share = cur_counts / max(cur_counts.sum(), 1)
    shift = float(0.5 * np.abs(ref_share - cur_share).sum())
    health["predicted_class"] = {
        "chi2": statistic, "dof": dof, "pvalue": pvalue, "total_variation": shift, "unknown_labels": unknown,
        "shares": {label: {"reference": float(r), "current": float(c)} for label, r, c in zip(labels, ref_share, cur_share)},
        "drifted": bool(enough and pvalue < thresholds["class_pvalue"] and shift >= thresholds["class_shift"])}
    return health


def latency_windows(times: np.ndarray, latency_ms: np.ndarray, window_s: float) -> dict[str, Any]:
    """Latency percentiles overall and per window of ``window_s`` seconds (windows with rows only)."""
    times, latency_ms = np.asarray(times, dtype=np.float64), np.asarray(latency_ms, dtype=np.float64)
    if not len(times):
        return {"window_s": window_s, "overall": None, "windows": []}
    slots = np.floor(times / window_s).astype(np.int64)
    windows = []
    for slot in np.unique(slots):
        chosen = latency_ms[slots == slot]
        windows.append({"start": float(slot * window_s), "rows": int(len(chosen)), **_percentiles(chosen)})
    return {"window_s": window_s, "overall": {"rows": int(len(latency_ms)), **_percentiles(latency_ms)},
            "windows": windows}


def _percentiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{p}_ms": float(np.percentile(values, p)) for p in PERCENTILES} | {"mean_ms": float(np.mean(values))}


def _mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")
