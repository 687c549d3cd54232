"""The drift report: monitor.json and monitor.md (numpy only), monitor.html with plots when matplotlib is installed.

Markdown and HTML are rendered from the same blocks, so they agree; every file is written atomically.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

from edgekit.artifacts import atomic_path, write_json_atomic, write_text_atomic

PLOT_FILE = "drift.png"


def number(value, digits: int = 4) -> str:
    """A value for a table cell: ``digits`` significant digits, n/a for None and NaN."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def verdict(result: dict) -> str:
    """One line: drift (naming the signals), no drift, or not enough rows to judge."""
    summary = result["summary"]
    if not summary["enough_rows"]:
        return (f"not enough rows to judge: {result['rows']} logged, {result['thresholds']['min_rows']:g} needed "
                "(statistics shown, nothing flagged)")
    if summary["drift"]:
        return f"DRIFT in {len(summary['drifted_signals'])} signal(s): {', '.join(summary['drifted_signals'])}"
    return f"no drift detected in {result['rows']} predictions"


def feature_verdict(feature: dict) -> str:
    """DRIFT, ok, or n/a when either side has no values (e.g. JPEG quality of raw arrays)."""
    if not np.isfinite(feature["pvalue"]):
        return "n/a"
    return "DRIFT" if feature["drifted"] else "ok"


def _blocks(result: dict) -> list[tuple[str, tuple, list]]:
    """(title, header, rows) tables shared by the Markdown and HTML writers."""
    features = [[name, f["group"], number(f["reference_mean"]), number(f["current_mean"]), number(f["psi"], 3),
                 number(f["ks"], 3), number(f["pvalue"], 3), number(f["wasserstein_std"], 3), feature_verdict(f)]
                for name, f in result["features"].items()]
    blocks = [("Per-feature drift", ("feature", "group", "ref mean", "now mean", "PSI", "KS", "KS p",
                                     "Wasserstein (ref std)", "verdict"), features)]
    health = result["prediction"]
    low = health["low_confidence_rate"]
    rows = [["mean confidence", number(health.get("reference_mean_confidence")), number(health["mean_confidence"]),
             f"shift {number(health.get('confidence_shift'), 3)}", ""],
            [f"low-confidence rate (top-1 < {low['threshold']:g})", number(low.get("reference_rate"), 3),
             number(low["rate"], 3), f"p {number(low.get('pvalue'), 3)}", "DRIFT" if low.get("drifted") else "ok"]]
    classes = health.get("predicted_class")
    if classes:
        rows.append(["predicted-class mix (chi-square)", "", "", f"chi2 {number(classes['chi2'], 4)}, p "
                     f"{number(classes['pvalue'], 3)}, TV {number(classes['total_variation'], 3)}",
                     "DRIFT" if classes["drifted"] else "ok"])
    blocks.append(("Prediction health", ("signal", "reference", "now", "test", "verdict"), rows))
    if classes:
        blocks.append(("Predicted-class shares", ("class", "reference", "now"),
                       [[label, f"{s['reference']:.3f}", f"{s['current']:.3f}"] for label, s in classes["shares"].items()]))
    latency = result["latency"]
    windows = [[time.strftime("%Y-%m-%d %H:%M", time.gmtime(w["start"])), w["rows"], number(w["p50_ms"]),
                number(w["p90_ms"]), number(w["p99_ms"])] for w in latency["windows"]]
    if latency["overall"]:
        o = latency["overall"]
        windows.append(["all", o["rows"], number(o["p50_ms"]), number(o["p90_ms"]), number(o["p99_ms"])])
    blocks.append((f"Latency per {latency['window_s']:g} s window (UTC)", ("window start", "rows", "p50 ms", "p90 ms",
                                                                            "p99 ms"), windows))
    if result.get("gates"):
        blocks.append(("Gates (fail if)", ("gate", "value", "result"),
                       [[g["gate"], number(g["value"]), "FAILED" if g["failed"] else "passed"] for g in result["gates"]]))
    return blocks


def drift_png(result: dict, reference: dict, rows: dict, path: Path) -> Path:
    """Reference vs logged distribution of every feature (drifted ones in red), the class mix and latency."""
    from edgekit.plots import _pyplot

    plt = _pyplot()
    names = list(result["features"])
    extra = 2 if result["prediction"].get("predicted_class") else 1
    columns = 4
    count = len(names) + extra
    fig, axes = plt.subplots((count + columns - 1) // columns, columns, figsize=(13, 2.6 * ((count + columns - 1) // columns)))
    axes = axes.ravel()
    for ax, name in zip(axes, names):
        group = "input" if result["features"][name]["group"] == "input" else "scores"
        ref = np.asarray(reference[group]["values"][name], dtype=np.float64)
        now = np.asarray(rows[name], dtype=np.float64)
        ref, now = ref[np.isfinite(ref)], now[np.isfinite(now)]
        both = np.concatenate([ref, now])
        edges = np.histogram_bin_edges(both, bins=30) if len(both) and np.ptp(both) > 0 else 10
        feature = result["features"][name]
        for values, colour, alpha, label in ((ref, "#888888", 0.5, "reference"),
                                             (now, "#d62728" if feature["drifted"] else "#1f77b4", 0.6, "logged")):
            if len(values):
                ax.hist(values, bins=edges, density=True, alpha=alpha, color=colour, label=label)
        if not len(now):  # e.g. no JPEG quality for inputs handed over as decoded arrays
            ax.text(0.5, 0.5, "not in the log", transform=ax.transAxes, ha="center", fontsize=8, color="#555555")
        ax.set_title(f"{name}  PSI {number(feature['psi'], 2)}" + ("  DRIFT" if feature["drifted"] else ""),
                     fontsize=9, color="#d62728" if feature["drifted"] else "black")
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    axes[0].legend(fontsize=7)
    position = len(names)
    classes = result["prediction"].get("predicted_class")
    if classes:
        ax = axes[position]
        labels = list(classes["shares"])
        x = np.arange(len(labels))
        ax.bar(x - 0.2, [classes["shares"][l]["reference"] for l in labels], 0.4, color="#888888", label="reference")
        ax.bar(x + 0.2, [classes["shares"][l]["current"] for l in labels], 0.4,
               color="#d62728" if classes["drifted"] else "#1f77b4", label="logged")
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"predicted classes  p {number(classes['pvalue'], 2)}" + ("  DRIFT" if classes["drifted"] else ""),
                     fontsize=9, color="#d62728" if classes["drifted"] else "black")
        ax.tick_params(labelsize=7)
        position += 1
    ax = axes[position]
    windows = result["latency"]["windows"]
    for key, style in (("p50_ms", "-o"), ("p90_ms", "--o"), ("p99_ms", ":o")):
        ax.plot(range(len(windows)), [w[key] for w in windows], style, markersize=3, label=key.replace("_ms", ""))
    ax.set_xticks(range(len(windows)), [time.strftime("%H:%M", time.gmtime(w["start"])) for w in windows],
                  fontsize=7)
    ax.set_xlabel("window start (UTC)", fontsize=7)
    ax.set_title(f"latency per {result['latency']['window_s']:g} s window (ms)", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    for ax in axes[position + 1:]:
        ax.axis("off")
    fig.suptitle(verdict(result), fontsize=11, color="#d62728" if result["summary"]["drift"] else "black")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def write_monitor_report(result: dict, reference: dict, rows: dict, out_dir: Path) -> dict[str, str]:
    """monitor.json + monitor.md always; monitor.html (+ drift.png) when matplotlib is installed.

    The HTML page uses the shared report style (:mod:`edgekit.html_report`): the verdict first, then
    the plot, then the tables; the PNG is also embedded so the page is one self-contained file."""
    from edgekit import html_report

    out_dir = Path(out_dir)
    title = f"edgekit monitor: {Path(result['log']).name}"
    intro = (f"Log `{result['log']}` ({result['rows']} rows used, {result['rows_excluded']} from other models "
             f"excluded) against the reference `{result['reference']}`.")
    thresholds = ", ".join(f"{k}={v:g}" for k, v in result["thresholds"].items())
    md = [f"# {title}", "", intro, "", f"**{verdict(result)}**", ""]
    body = [html_report.summary([("Verdict", verdict(result)), ("Log", f"{result['log']} ({result['rows']} rows used, "
                                 f"{result['rows_excluded']} from other models excluded)"),
                                 ("Reference", str(result["reference"])),
                                 ("Thresholds", f"{thresholds} (override with --threshold NAME=VALUE)")])]
    paths = {"json": out_dir / "monitor.json", "markdown": out_dir / "monitor.md"}
    if importlib.util.find_spec("matplotlib") is not None and result["rows"]:
        drift_png(result, reference, rows, out_dir / PLOT_FILE)
        body.append(html_report.image(out_dir / PLOT_FILE, "reference vs logged distributions"))
        paths["plot"] = out_dir / PLOT_FILE
    for heading, header, table in _blocks(result):
        md += [f"## {heading}", "", html_report.markdown_table(header, table), ""]
        body += [html_report.heading(heading), html_report.table(header, table)]
    md += [f"Thresholds: {thresholds} (override with `--threshold NAME=VALUE`).", ""]
    write_json_atomic(paths["json"], result)
    write_text_atomic(paths["markdown"], "\n".join(md) + "\n")
    if "plot" in paths:
        paths["html"] = out_dir / "monitor.html"
        write_text_atomic(paths["html"], html_report.page(title, *body))
    return {k: str(v) for k, v in paths.items()}
