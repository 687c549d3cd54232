"""Pareto front of variants over accuracy (higher is better), latency and size (lower is better), and the pick.

A variant dominates another on the same device when it is at least as good on every objective and
strictly better on one. Each device has its own front (latencies on two devices are different
questions: int8 on 2 threads says nothing about the best choice on 1). The pick is the smallest,
then fastest, then most accurate Pareto-optimal (variant, device) that meets every constraint, where sizes
and latencies closer than :data:`SIZE_TIE` / :data:`LATENCY_TIE` count as equal: pruned+int8 and int8 are
the same file size, and their p50s 0.01 ms apart once picked the pruned one, 0.19 points less accurate
and agreeing with float on 73.5% of photos against 94.3% (benchmarks/results/recipe_clothing_small, session 29).
"""

from __future__ import annotations

from pathlib import Path

OBJECTIVES = (("accuracy", "max"), ("p50_ms", "min"), ("size_mb", "min"))
SIZE_TIE = 0.02  # relative: a 2% smaller file is not worth accuracy
LATENCY_TIE = 0.05  # relative: one run's round-to-round spread (sparse_pruning: 0.93-1.01 on a busy Xeon, 0.97-1.01 on an AVX-512 EPYC)


def _better_or_equal(a: dict, b: dict) -> bool:
    return all((a[k] >= b[k]) if sense == "max" else (a[k] <= b[k]) for k, sense in OBJECTIVES)


def _strictly_better(a: dict, b: dict) -> bool:
    return any((a[k] > b[k]) if sense == "max" else (a[k] < b[k]) for k, sense in OBJECTIVES)


def pareto_front(rows: list[dict]) -> list[dict]:
    """The rows no other row on the same device dominates (rows lacking a measured objective are left out)."""
    measured = [r for r in rows if all(r.get(k) is not None for k, _ in OBJECTIVES)]
    return [r for r in measured
            if not any(_better_or_equal(o, r) and _strictly_better(o, r)
                       for o in measured if o is not r and o.get("device") == r.get("device"))]


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
    """The smallest, then fastest, then most accurate Pareto-optimal row that meets every constraint (sizes and
    latencies within :data:`SIZE_TIE` / :data:`LATENCY_TIE` of the best are ties)."""
    candidates = [r for r in pareto_front(rows) if not violations(r, constraints, reference_accuracy=reference_accuracy)]
    if not candidates:
        return None
    smallest = min(r["size_mb"] for r in candidates)
    candidates = [r for r in candidates if r["size_mb"] <= smallest * (1 + SIZE_TIE)]
    fastest = min(r["p50_ms"] for r in candidates)
    candidates = [r for r in candidates if r["p50_ms"] <= fastest * (1 + LATENCY_TIE)]
    return min(candidates, key=lambda r: (-r["accuracy"], r["size_mb"], r["p50_ms"]))


def describe_constraints(constraints: dict) -> str:
    """The recipe's constraints as readable text (``top-1 drop <= 1 pts, p50 <= 50 ms``), or ``none``."""
    parts = []
    if constraints.get("max_accuracy_drop") is not None:
        parts.append(f"top-1 drop ≤ {constraints['max_accuracy_drop']:g} pts vs float")
    if constraints.get("max_latency_ms") is not None:
        parts.append(f"p50 ≤ {constraints['max_latency_ms']:g} ms")
    if constraints.get("max_size_mb") is not None:
        parts.append(f"size ≤ {constraints['max_size_mb']:g} MB")
    return ", ".join(parts) or "none"


_FRONT, _DOMINATED, _LIMIT = "#1f6fb4", "#a8a8a8", "#c62828"


def _marker_area(size_mb: float, biggest: float) -> float:
    return 40 + 560 * size_mb / biggest


def pareto_figure(rows: list[dict], front: list[dict], *, title: str, chosen: dict | None = None,
                  constraints: dict | None = None, reference_accuracy: float | None = None):
    """One panel per device: top-1 vs p50 latency, marker area ~ size, labels placed without overlap.

    Blue = Pareto-optimal on that device, grey = dominated, hollow = breaks a constraint, ringed and starred =
    the pick; the accuracy floor and latency limit are drawn as red dashed lines where they fall in view.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    from edgekit.plots import _pyplot, place_labels

    plt = _pyplot()
    constraints = constraints or {}
    measured = [r for r in rows if all(r.get(k) is not None for k, _ in OBJECTIVES)]
    devices = list(dict.fromkeys(r["device"] for r in measured)) or ["(nothing measured)"]
    columns = min(2, len(devices))
    panel_rows = -(-len(devices) // columns)
    fig, axes = plt.subplots(panel_rows, columns, figsize=(5.5 * columns if columns > 1 else 8, 4.2 * panel_rows + 1.5),
                             dpi=110,
                             sharey=True, squeeze=False)
    fig.subplots_adjust(left=0.08 if columns > 1 else 0.13, right=0.98, top=1 - 0.95 / (4.2 * panel_rows + 1.5),
                        bottom=1.1 / (4.2 * panel_rows + 1.5), hspace=0.35, wspace=0.08)
    biggest = max((r["size_mb"] for r in measured), default=1.0) or 1.0
    floor = None
    if constraints.get("max_accuracy_drop") is not None and reference_accuracy is not None:
        floor = reference_accuracy * 100 - constraints["max_accuracy_drop"]
    accuracies = [r["accuracy"] * 100 for r in measured] + ([floor] if floor is not None else [])
    low, high = (min(accuracies), max(accuracies)) if accuracies else (0.0, 100.0)
    span = max(high - low, 1.0)
    for ax in axes.flat:
        ax.set_ylim(low - 0.25 * span, high + 0.3 * span)
    limit = constraints.get("max_latency_ms")
    off_chart = []
    for ax, device in zip(axes.flat, devices):
        panel = [r for r in measured if r["device"] == device]
        latencies = [r["p50_ms"] for r in panel] or [1.0]
        x_low, x_high = min(latencies), max(latencies)
        show_limit = limit is not None and limit <= 1.6 * x_high
        if show_limit:
            x_high = max(x_high, limit)
        elif limit is not None:
            off_chart.append(device)
        if x_high / x_low > 8:
            ax.set_xscale("log")
            ax.set_xlim(x_low / 1.6, x_high * 1.6)
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            pad = max(x_high - x_low, 0.2 * x_high)
            ax.set_xlim(max(0.0, x_low - 0.45 * pad), x_high + 0.45 * pad)
        if floor is not None:
            ax.axhline(floor, color=_LIMIT, ls="--", lw=1)
            ax.axhspan(ax.get_ylim()[0], floor, color=_LIMIT, alpha=0.06, lw=0)
        if show_limit:
            ax.axvline(limit, color=_LIMIT, ls="--", lw=1)
            ax.axvspan(limit, ax.get_xlim()[1], color=_LIMIT, alpha=0.06, lw=0)
        groups: dict[tuple, list[dict]] = {}
        for row in panel:
            on_front = any(row is f for f in front)
            broken = violations(row, constraints, reference_accuracy=reference_accuracy)
            color = _FRONT if on_front else _DOMINATED
            ax.scatter(row["p50_ms"], row["accuracy"] * 100, s=_marker_area(row["size_mb"], biggest), zorder=3,
                       facecolors="white" if broken else color, edgecolors="black" if row is chosen else color,
                       linewidths=2.2 if row is chosen else 1.4, alpha=0.85)
            groups.setdefault((row["p50_ms"], row["accuracy"]), []).append(row)
        texts, anchors, radii, bold = [], [], [], []
        for (x, y), members in groups.items():  # coinciding variants share one label
            by_size: dict[float, list[str]] = {}
            for row in members:
                by_size.setdefault(row["size_mb"], []).append(("★ " if row is chosen else "") + row["variant"])
            texts.append("\n".join(f"{', '.join(names)}  {size:.2f} MB" for size, names in by_size.items()))
            anchors.append((x, y * 100))
            radii.append(max(_marker_area(r["size_mb"], biggest) for r in members) ** 0.5 / 2)
            bold.append(any(r is chosen for r in members))
        place_labels(ax, anchors, texts, marker_radii_pt=radii, bold=bold)
        ax.set_title(device, fontsize=10, fontweight="bold")
        ax.set_xlabel("p50 latency (ms, lower is better)", fontsize=8.5)
        ax.grid(alpha=0.25)
        ax.tick_params(labelsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("top-1 accuracy (%)", fontsize=8.5)
    for ax in list(axes.flat)[len(devices):]:
        ax.set_visible(False)
    sizes = sorted({round(biggest * f, 1 if biggest < 10 else 0) for f in (0.25, 0.5, 1.0)})
    handles = [Line2D([], [], marker="o", ls="", color=_FRONT, markersize=8, label="Pareto-optimal on its device"),
               Line2D([], [], marker="o", ls="", color=_DOMINATED, markersize=8, label="dominated"),
               Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor=_FRONT, markersize=8,
                      label="hollow: breaks a constraint"),
               Line2D([], [], marker="o", ls="", markerfacecolor=_FRONT, markeredgecolor="black",
                      markeredgewidth=2, markersize=8, label="★ the pick")]
    if floor is not None or (limit is not None and len(off_chart) < len(devices)):
        handles.append(Line2D([], [], color=_LIMIT, ls="--", label="constraint limit"))
    handles += [Line2D([], [], marker="o", ls="", color="0.55", markersize=_marker_area(s, biggest) ** 0.5,
                       label=f"{s:g} MB") for s in sizes if s > 0]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5 if columns > 1 else 4),
               fontsize=8, frameon=False, handletextpad=0.9, columnspacing=2.2, borderaxespad=0.2)
    note = f"constraints: {describe_constraints(constraints)}"
    if off_chart:
        note += f" (p50 limit beyond the chart on {', '.join(off_chart)})"
    fig.suptitle(f"{title}: accuracy vs latency per device, marker area ~ model size\n{note}", fontsize=10)
    return fig


def pareto_png(rows: list[dict], front: list[dict], path: Path, *, title: str, chosen: dict | None = None,
               constraints: dict | None = None, reference_accuracy: float | None = None) -> Path:
    """:func:`pareto_figure` written as a PNG (atomically)."""
    from edgekit.artifacts import atomic_path
    from edgekit.plots import _pyplot

    fig = pareto_figure(rows, front, title=title, chosen=chosen, constraints=constraints,
                        reference_accuracy=reference_accuracy)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
    _pyplot().close(fig)
    return Path(path)
