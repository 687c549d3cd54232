"""CI gates: ``--fail-if "accuracy_drop>1"``: a metric from a fixed set, a comparison, a number.

Parsed with one regular expression (never ``eval``); a gate holds -> the run fails. Latency and
memory gates are checked on every profiled device, accuracy gates once.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass

from edgekit.errors import GateFailedError, UsageError

# metric -> (where it lives: "accuracy" or "device", key path, unit)
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "accuracy_drop": ("accuracy", ("accuracy_drop",), "points"),
    "accuracy_drop_upper95": ("accuracy", ("change", "upper95_points"), "points"),  # one-sided 95% bound
    "top5_drop": ("accuracy", ("top5_drop",), "points"),
    "accuracy": ("accuracy", ("model", "accuracy"), ""),
    "top1_agreement": ("accuracy", ("top1_agreement",), ""),
    "p50_ms": ("device", ("latency", "p50_ms"), "ms"),
    "p90_ms": ("device", ("latency", "p90_ms"), "ms"),
    "p99_ms": ("device", ("latency", "p99_ms"), "ms"),
    "mean_ms": ("device", ("latency", "mean_ms"), "ms"),
    "min_ms": ("device", ("latency", "min_ms"), "ms"),
    "init_ms": ("device", ("init_ms",), "ms"),
    "first_inference_ms": ("device", ("first_inference_ms",), "ms"),
    "memory_mib": ("device", ("memory", "peak_delta_mib"), "MiB"),
    "peak_rss_mib": ("device", ("memory", "peak_rss_mib"), "MiB"),
    "model_size_mib": ("device", ("memory", "model_file_mib"), "MiB"),
}
OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_GATE = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    limit: float

    @property
    def needs_accuracy(self) -> bool:
        return METRICS[self.metric][0] == "accuracy"

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit:g}"


def parse_gate(text: str, *, metrics: Mapping[str, object] = METRICS, example: str = "p50_ms>10") -> Gate:
    """``"p50_ms>10"`` -> Gate; anything else is a UsageError listing the accepted form.

    ``metrics`` is the command's table of gate names (``edgekit monitor`` passes its own).
    """
    match = _GATE.match(text or "")
    form = f"METRIC OP NUMBER with METRIC in {', '.join(metrics)} and OP in {', '.join(OPERATORS)}"
    if not match:
        raise UsageError(f"--fail-if {text!r} is not a gate expression", fix=f'write e.g. "{example}": {form}')
    metric, op, number = match.groups()
    if metric not in metrics:
        raise UsageError(f"--fail-if {text!r}: unknown metric {metric!r}", fix=form)
    limit = float(number)
    if not math.isfinite(limit):
        raise UsageError(f"--fail-if {text!r}: the limit must be a finite number", fix=form)
    return Gate(metric, op, limit)


def lookup(record: dict | None, path: tuple[str, ...]):
    for key in path:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def evaluate_gates(gates: list[Gate], result: dict) -> list[dict]:
    """One row per gate (per device for device metrics): value, whether the fail condition held."""
    rows = []
    for gate in gates:
        scope, path, unit = METRICS[gate.metric]
        if scope == "accuracy":
            targets = [("-", result.get("accuracy"))]
        else:
            targets = [(name, d) for name, d in result["devices"].items() if d.get("status") == "ok"]
        for device, record in targets:
            value = lookup(record, path)
            failed = value is None or OPERATORS[gate.op](value, gate.limit)
            rows.append({"gate": str(gate), "device": device, "value": value, "unit": unit, "failed": failed,
                         "reason": "not measured" if value is None else ""})
    return rows


def enforce_gates(result: dict) -> None:
    """Raise GateFailedError naming every gate that held (metric, device, value, limit)."""
    failed = [row for row in result.get("gates", []) if row["failed"]]
    if not failed:
        return
    lines = []
    for row in failed:
        where = "" if row["device"] == "-" else f" on {row['device']}"
        value = "not measured" if row["value"] is None else f"{row['value']:.4g}{(' ' + row['unit']) if row['unit'] else ''}"
        lines.append(f"{row['gate']}{where}: {value}")
    raise GateFailedError("gate failed: " + "; ".join(lines),
                          fix="improve the model or device, or relax the --fail-if limit")
