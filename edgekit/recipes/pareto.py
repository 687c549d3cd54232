"""Pareto front of variants over accuracy (higher is better), latency and size (lower is better), and the pick.

A variant dominates another when it is at least as good on every objective and strictly better on
one. The pick is the smallest, then fastest, Pareto-optimal variant that meets every constraint.
"""

from __future__ import annotations

from pathlib import Path

OBJECTIVES = (("accuracy", "max"), ("p50_ms", "min"), ("size_mb", "min"))


def _better_or_equal(a: dict, b: dict) -> bool:
    return all((a[k] >= b[k]) if sense == "max" else (a[k] <= b[k]) for k, sense in OBJECTIVES)


def _strictly_better(a: dict, b: dict) -> bool:
    return any((a[k] > b[k]) if sense == "max" else (a[k] < b[k]) for k, sense in OBJECTIVES)


def pareto_front(rows: list[dict]) -> list[dict]:
    """The rows no other row dominates (rows lacking a measured objective are left out)."""
    measured = [r for r in rows if all(r.get(k) is not None for k, _ in OBJECTIVES)]
    return [r for r in measured
            if not any(_better_or_equal(o, r) and _strictly_better(o, r) for o in measured if o is not r)]


def violations(row: dict, constraints: dict, *, reference_accuracy: float | None) -> list[str]:
    """Which constraints a row breaks, as readable strings (empty: it meets them all)."""
    broken = []
    limit = constraints.get("max_accuracy_drop")
    if limit is not None and reference_accuracy is not None and row.get("accuracy") is not None:
        drop = (reference_accuracy - row["accuracy"]) * 100
        if drop > limit:
            broken.append(f"accuracy drop {drop:.2f} pts > {limit}")
    if constraints.get("max_latency_ms") is not None and row.get("p50_ms") is not None \
            and row["p50_ms"] > constraints["max_latency_ms"]:
        broken.append(f"p50 {row['p50_ms']:.2f} ms > {constraints['max_latency_ms']}")
    if constraints.get("max_size_mb") is not None and row.get("size_mb") is not None \
            and row["size_mb"] > constraints["max_size_mb"]:
        broken.append(f"size {row['size_mb']:.2f} MB > {constraints['max_size_mb']}")
    return broken


def pick(rows: list[dict], constraints: dict, *, reference_accuracy: float | None) -> dict | None:
    """The smallest, then fastest, then most accurate Pareto-optimal row that meets every constraint."""
    candidates = [r for r in pareto_front(rows) if not violations(r, constraints, reference_accuracy=reference_accuracy)]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (r["size_mb"], r["p50_ms"], -r["accuracy"]))


def pareto_png(rows: list[dict], front: list[dict], path: Path, *, title: str, chosen: dict | None = None) -> Path:
    """Accuracy vs p50 latency, marker area proportional to size; the front joined by a line."""
    from edgekit.artifacts import atomic_path
    from edgekit.plots import _pyplot

    plt = _pyplot()
    measured = [r for r in rows if all(r.get(k) is not None for k, _ in OBJECTIVES)]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    biggest = max((r["size_mb"] for r in measured), default=1.0) or 1.0
    labels: dict[tuple[float, float], list[str]] = {}
    for row in measured:
        on_front = any(row is f for f in front)
        ax.scatter(row["p50_ms"], row["accuracy"] * 100, s=40 + 400 * row["size_mb"] / biggest, alpha=0.6,
                   color="tab:blue" if on_front else "tab:gray", edgecolors="black" if row is chosen else "none",
                   linewidths=2)
        labels.setdefault((row["p50_ms"], row["accuracy"] * 100), []).append(
            f"{row['variant']}@{row['device']} {row['size_mb']:.2f} MB")
    for (x, y), names in labels.items():  # one label per point: coinciding variants share it
        ax.annotate("\n".join(names), (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    if front:
        ordered = sorted(front, key=lambda r: r["p50_ms"])
        ax.plot([r["p50_ms"] for r in ordered], [r["accuracy"] * 100 for r in ordered], "--", color="tab:blue",
                label="Pareto front")
        ax.legend(loc="lower right")
    ax.set_xlabel("p50 latency (ms, lower is better)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title + "  (marker area ~ size)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
