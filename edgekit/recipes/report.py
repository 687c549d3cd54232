"""The run report: one table of variants x devices, the Pareto front and plot, the pick, stage timings,
the environment and how to reproduce it, as JSON, Markdown and a single self-contained HTML file."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from edgekit.artifacts import library_versions, write_json_atomic, write_text_atomic
from edgekit.recipes.pareto import pareto_front, pareto_png, pick, violations

COLUMNS = (("variant", "variant"), ("device", "device"), ("format", "format"), ("size_mb", "size MB"),
           ("gzip_mb", "gzip MB"), ("p50_ms", "p50 ms"), ("accuracy", "top-1"), ("accuracy_drop_pts", "drop pts"),
           ("accuracy_drop_ci95", "drop 95% CI"), ("accuracy_images", "n"), ("top1_agreement", "agree"), ("peak_memory_mib", "peak MiB"), ("status", "status"))


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) == 2:  # an interval
        return f"{value[0]:.2f} to {value[1]:.2f}"
    return str(value)


def _table_rows(rows: list[dict], front: list[dict], chosen: dict | None) -> list[list[str]]:
    out = []
    for row in rows:
        mark = " ★" if row is chosen else (" ◆" if any(row is f for f in front) else "")
        out.append([_cell(row.get(key)) + (mark if key == "variant" else "") for key, _ in COLUMNS])
    return out


def write_run_report(summary: dict, out_dir: Path) -> dict:
    """Write report.json / report.md / report.html / pareto.png into ``out_dir``; returns their paths + the pick."""
    rows = summary["rows"]
    measured = [r for r in rows if r.get("status") == "ok" and r.get("accuracy") is not None]
    front = pareto_front(measured)
    constraints = summary.get("constraints", {})
    reference = summary.get("reference_accuracy")
    chosen = pick(measured, constraints, reference_accuracy=reference)
    for row in measured:
        row["violations"] = violations(row, constraints, reference_accuracy=reference)
        row["pareto"] = any(row is f for f in front)
    plot = pareto_png(measured, front, out_dir / "pareto.png", title=summary["name"], chosen=chosen)
    summary = dict(summary, pick=chosen, pareto=[f"{r['variant']}@{r['device']}" for r in front],
                   environment=library_versions("tensorflow", "tf-keras", "tensorflow-model-optimization",
                                                "ai-edge-litert", "onnxruntime", "tf2onnx", "numpy"))
    reproduce = f"edgekit run {summary['recipe']} --out {summary['output']}"
    pick_line = (f"**Pick:** `{chosen['variant']}` on `{chosen['device']}`: {chosen['size_mb']:.3f} MB, "
                 f"p50 {chosen['p50_ms']:.3f} ms, top-1 {chosen['accuracy']:.4f}"
                 if chosen else "**Pick:** no variant meets every constraint")
    stage_rows = [[s["name"], "skipped (unchanged)" if s["skipped"] else ("failed" if s["error"] else "ran"),
                   f"{s['seconds']:.1f}", s["error"] or ""] for s in summary["stages"]]
    header = [title for _, title in COLUMNS]
    table = _table_rows(rows, front, chosen)
    markdown = "\n".join([
        f"# edgekit run: {summary['name']}", "",
        f"Float model top-1 on the test images: {_cell(reference)}. Constraints: {constraints or 'none'}.", "",
        pick_line, "", "★ pick, ◆ Pareto-optimal (accuracy vs p50 latency vs size).", "",
        _md(header, table), "", "![Pareto front](pareto.png)", "", "## Stages", "",
        _md(["stage", "status", "seconds", "error"], stage_rows), "",
        f"Wall time: {summary['wall_time_s']} s.", "", "## Environment", "",
        _md(["component", "version"], [[k, v] for k, v in summary["environment"].items()]), "",
        "## Reproduce", "", f"```\n{reproduce}\n```", f"Seed: {summary['seed']}.", ""])
    image = base64.b64encode(plot.read_bytes()).decode()
    page = "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>edgekit run: {html.escape(summary['name'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "code{background:#f4f4f4;padding:1px 4px}</style></head><body>",
        f"<h1>edgekit run: {html.escape(summary['name'])}</h1>",
        f"<p>Float model top-1 on the test images: {_cell(reference)}. Constraints: "
        f"{html.escape(str(constraints or 'none'))}.</p>",
        f"<p>{html.escape(pick_line.replace('**', ''))}</p><p>★ pick, ◆ Pareto-optimal.</p>",
        _html(header, table), f"<p><img alt='Pareto front' src='data:image/png;base64,{image}'></p>",
        "<h2>Stages</h2>", _html(["stage", "status", "seconds", "error"], stage_rows),
        f"<p>Wall time: {summary['wall_time_s']} s.</p><h2>Environment</h2>",
        _html(["component", "version"], [[k, v] for k, v in summary["environment"].items()]),
        f"<h2>Reproduce</h2><pre>{html.escape(reproduce)}</pre><p>Seed: {summary['seed']}.</p></body></html>"])
    paths = {"report_json": out_dir / "report.json", "report_md": out_dir / "report.md",
             "report_html": out_dir / "report.html", "pareto_png": plot}
    write_text_atomic(paths["report_md"], markdown)
    write_text_atomic(paths["report_html"], page)
    write_json_atomic(paths["report_json"], summary)
    return {"pick": chosen, "pareto": summary["pareto"], "reports": {k: str(v) for k, v in paths.items()}}


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
