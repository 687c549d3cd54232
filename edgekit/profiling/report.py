"""The profile report: JSON, Markdown and HTML with PNG plots (latency histograms, confusion matrices).

Summary first (per-device p50, accuracy loss, gates), then the latency histograms, then the long
tables. Every file is written atomically; the terminal table, the Markdown and the HTML are built
from the same rows so they agree.
"""

from __future__ import annotations

from pathlib import Path

from edgekit import html_report
from edgekit.artifacts import atomic_path, write_json_atomic, write_text_atomic
from edgekit.tables import DROP_HEADER, Column, number, percent, signed

# (column, cell of a measured device); optional columns are the first left out of a narrow terminal.
_LATENCY_FIELDS = (
    (Column("device"), lambda name, d: name),
    (Column("backend", optional=True), lambda name, d: d["backend"].removeprefix("edgekit:")),
    (Column("thr", numeric=True, optional=True), lambda name, d: str(d["threads"])),
    (Column("init\nms", numeric=True), lambda name, d: number(d["init_ms"])),
    (Column("first\nms", numeric=True), lambda name, d: number(d["first_inference_ms"])),
    (Column("min\nms", numeric=True, optional=True), lambda name, d: number(d["latency"]["min_ms"])),
    (Column("p50\nms", numeric=True), lambda name, d: number(d["latency"]["p50_ms"])),
    (Column("p90\nms", numeric=True), lambda name, d: number(d["latency"]["p90_ms"])),
    (Column("p99\nms", numeric=True), lambda name, d: number(d["latency"]["p99_ms"])),
    (Column("mean\nms", numeric=True, optional=True), lambda name, d: number(d["latency"]["mean_ms"])),
    (Column("std\nms", numeric=True, optional=True), lambda name, d: number(d["latency"]["std_ms"])),
    (Column("peak +\nMiB", numeric=True), lambda name, d: number(d["memory"]["peak_delta_mib"])),
    (Column("peak RSS\nMiB", numeric=True, optional=True), lambda name, d: number(d["memory"]["peak_rss_mib"])),
)


def latency_table(result: dict) -> tuple[list[Column], list[list[str]]]:
    """One row per measured device (``peak +`` is the peak RSS added by loading and running the model)."""
    rows = [[cell(name, device) for _, cell in _LATENCY_FIELDS]
            for name, device in result["devices"].items() if device["status"] == "ok"]
    return [column for column, _ in _LATENCY_FIELDS], rows


def unavailable_devices(result: dict) -> list[str]:
    """One line per device that was not measured, with the reason."""
    return [f"{name}: skipped: {device['reason']}" for name, device in result["devices"].items()
            if device["status"] != "ok"]


def accuracy_line(accuracy: dict) -> str:
    """Top-1 of the model against its float parent, in one sentence (the drop is positive for a loss)."""
    model, parent = accuracy["model"], accuracy.get("parent")
    if not parent:
        return (f"top-1 {percent(model['accuracy'])} % on {accuracy['images']} images; no parent comparison: "
                f"{accuracy['parent_missing']}")
    change = accuracy["change"]
    low, high = change["interval95_points"]
    line = (f"top-1 {percent(model['accuracy'])} % vs parent {percent(parent['accuracy'])} % on "
            f"{accuracy['images']} images: drop {signed(accuracy['accuracy_drop'])} pts (+ = loss), "
            f"95% CI {low:+.2f} to {high:+.2f}, top-1 agreement {percent(accuracy['top1_agreement'], 1)} %")
    worst = change.get("worst_class_recall_drop")
    if worst and worst["points"] > 0:
        line += f", worst class {worst['class']} recall -{worst['points']:.1f} pts"
    return "; ".join([line, *(f"warning: {w}" for w in accuracy["change"]["warnings"])])


def gate_lines(result: dict) -> list[str]:
    return [f"{g['gate']}{'' if g['device'] == '-' else ' on ' + g['device']}: "
            f"{'FAILED' if g['failed'] else 'passed'}" for g in result.get("gates", [])]


def latency_histogram_png(times_ms: list[float], path: Path, *, title: str) -> Path:
    from edgekit.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(times_ms, bins=min(40, max(5, len(times_ms) // 3)), color="#3b75af")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("runs")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def _accuracy_rows(accuracy: dict) -> list[list[str]]:
    model, parent = accuracy["model"], accuracy.get("parent")
    top5 = next(k for k in model if k.startswith("top") and k.endswith("_accuracy"))
    rows = [["top-1 %", percent(model["accuracy"]), percent(parent["accuracy"]) if parent else "n/a"],
            [top5.replace("_accuracy", "").replace("top", "top-") + " %", percent(model[top5]),
             percent(parent[top5]) if parent else "n/a"],
            ["macro F1", f"{model['macro_f1']:.4f}", f"{parent['macro_f1']:.4f}" if parent else "n/a"]]
    if parent:
        rows += [[f"top-1 {DROP_HEADER}", signed(accuracy["accuracy_drop"], 3), ""],
                 ["top-1 agreement %", percent(accuracy["top1_agreement"]), ""]]
        change = accuracy["change"]
        low, high = change["interval95_points"]
        worst = change["worst_class_recall_drop"] or {}
        rows += [["paired 95% interval (pts)", f"{low:+.2f} to {high:+.2f}", f"n={change['images']}"],
                 ["worst class recall drop (pts)", f"{worst.get('points', 0):.1f}", worst.get("class", "")]]
        rows += [["warning", text, ""] for text in change["warnings"]]
    return rows


def _detail_tables(result: dict) -> list[tuple[str, list[str], list[list], frozenset[int]]]:
    """(title, header, rows, numeric columns) of the long tables, after the summary and the plots."""
    columns, rows = latency_table(result)
    blocks = [("Latency and memory", [c.header.replace("\n", " ") for c in columns], rows,
               frozenset(i for i, c in enumerate(columns) if c.numeric))]
    accuracy = result.get("accuracy")
    if accuracy:
        note = accuracy.get("parent_missing", f"parent: {accuracy.get('parent_path')}")
        blocks.append((f"Accuracy on {accuracy['images']} images ({note})", ["metric", "model", "parent"],
                       _accuracy_rows(accuracy), frozenset({1, 2})))
        blocks.append(("Per class (model)", ["class", "precision", "recall", "F1", "support"],
                       [[c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
                        for c, v in accuracy["model"]["per_class"].items()], frozenset({1, 2, 3, 4})))
    memory = [[n, number(d["memory"]["baseline_peak_mib"]), number(d["memory"]["model_file_mib"]),
               number(d["memory"]["activation_mib_estimate"]), d["memory"]["activation_note"]]
              for n, d in result["devices"].items() if d["status"] == "ok"]
    blocks.append(("Memory details", ["device", "baseline MiB (runtime imported)", "model file MiB",
                                      "activations MiB", "note"], memory, frozenset({1, 2, 3})))
    for name, device in result["devices"].items():
        ops = device.get("op_profile") or {}
        if ops.get("ops"):
            blocks.append((f"Top ops on {name} ({ops['source']})", ["op", "calls", "ms/run", "share %"],
                           [[o["op"], o["calls"], f"{o['ms_per_run']:.4f}", percent(o["share"], 1)] for o in ops["ops"]],
                           frozenset({1, 2, 3})))
    return blocks


def _summary(result: dict) -> list[tuple[str, str]]:
    facts = [("Model", f"{result['model']} ({result['format']}), {result['runs']} timed runs per device")]
    facts += [(f"p50 on {name}", f"{number(d['latency']['p50_ms'])} ms (p90 {number(d['latency']['p90_ms'])} ms), "
                                 f"peak +{number(d['memory']['peak_delta_mib'])} MiB")
              for name, d in result["devices"].items() if d["status"] == "ok"]
    facts += [("Not measured", line) for line in unavailable_devices(result)]
    if result.get("accuracy"):
        facts.append(("Accuracy", accuracy_line(result["accuracy"])))
    facts += [("Gate", line) for line in gate_lines(result)]
    no_ops: dict[str, list[str]] = {}  # one line per reason, not per device
    for name, device in result["devices"].items():
        ops = device.get("op_profile") or {}
        if device["status"] == "ok" and not ops.get("ops") and ops.get("reason"):
            no_ops.setdefault(ops["reason"], []).append(name)
    facts += [(f"Per-op timing ({', '.join(names)})", reason) for reason, names in no_ops.items()]
    return facts


def write_report(result: dict, out_dir: Path) -> dict[str, str]:
    """profile.json, report.md, report.html and the PNGs into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    images: dict[str, str] = {}
    for name, device in result["devices"].items():
        if device["status"] == "ok" and device.get("times_ms"):
            file = f"latency_{name}.png"
            latency_histogram_png(device["times_ms"], out_dir / file, title=f"{Path(result['model']).name} on {name}")
            images[f"latency_{name}"] = file
    accuracy = result.get("accuracy")
    if accuracy:
        from edgekit.plots import confusion_matrix_png

        for role in ("model", "parent"):
            if accuracy.get(role):
                file = f"confusion_{role}.png"
                confusion_matrix_png(accuracy[role]["confusion_matrix"], accuracy[role]["labels"], out_dir / file,
                                     title=f"{role}: top-1 {percent(accuracy[role]['accuracy'])} %")
                images[f"confusion_{role}"] = file
    title = f"edgekit profile: {Path(result['model']).name}"
    facts = _summary(result)
    tables = _detail_tables(result)
    md = [f"# {title}", ""] + [f"- **{label}:** {value}" for label, value in facts] + [""]
    md += [f"![{file}]({file})" for file in images.values()] + [""]
    for heading, header, rows, numeric in tables:
        md += [f"## {heading}", "", html_report.markdown_table(header, rows, numeric=numeric), ""]
    parts = [html_report.summary(facts), html_report.images([out_dir / f for f in images.values()])]
    for heading, header, rows, numeric in tables:
        parts += [html_report.heading(heading), html_report.table(header, rows, numeric=numeric)]
    write_json_atomic(out_dir / "profile.json", result)
    write_text_atomic(out_dir / "report.md", "\n".join(md) + "\n")
    write_text_atomic(out_dir / "report.html", html_report.page(title, *parts))
    paths = {"json": "profile.json", "markdown": "report.md", "html": "report.html", **images}
    return {k: str(out_dir / v) for k, v in paths.items()}
