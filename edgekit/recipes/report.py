"""The run report: the pick, the constraints and the Pareto plot first, then one table of measured
variants x devices, what was not measured (once per variant or device, with the reason), stage
timings, the environment and how to reproduce it, as JSON, Markdown and one self-contained HTML file.

The terminal summary (``edgekit run/sweep/quickstart``) is built from the same rows and columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgekit import html_report
from edgekit.artifacts import library_versions, write_json_atomic, write_text_atomic
from edgekit.machine import machine_record
from edgekit.recipes.pareto import describe_constraints, pareto_front, pareto_png, pick, violations
from edgekit.tables import DROP_EXPLAINED, DROP_HEADER, Column, number, one_line, percent, signed

PICK_MARK, FRONT_MARK = "★", "◆"
MARKS_EXPLAINED = f"{PICK_MARK} pick, {FRONT_MARK} Pareto-optimal on its device (accuracy vs p50 vs size)"


REPRODUCE_FROM = "From the folder the run started in:"


def reproduce_command(recipe: str, output: str, *, cwd: Path) -> str:
    """``edgekit run`` for this recipe and output folder, each path relative to ``cwd`` where it lies under it,
    so a report kept with a project (or committed) names its own files, not one machine's folders."""
    def shown(path: str) -> str:
        resolved = Path(path).resolve()
        return str(resolved.relative_to(cwd.resolve())) if resolved.is_relative_to(cwd.resolve()) else str(resolved)

    return f"edgekit run {shown(recipe)} --out {shown(output)}"


@dataclass(frozen=True)
class Field:
    key: str
    column: Column
    text: Callable[[object], str]


FIELDS = (
    Field("variant", Column("variant"), str),
    Field("device", Column("device"), str),
    Field("size_mb", Column("size\nMB", numeric=True), number),
    Field("gzip_mb", Column("gzip\nMB", numeric=True, optional=True), number),
    Field("p50_ms", Column("p50\nms", numeric=True), number),
    Field("accuracy", Column("top-1\n%", numeric=True), percent),
    Field("accuracy_drop_pts", Column(DROP_HEADER.replace(" (", "\n("), numeric=True), signed),
    Field("accuracy_drop_ci95", Column("drop 95%\nCI pts", numeric=True, optional=True),
          lambda v: f"{v[0]:+.2f}..{v[1]:+.2f}"),
    Field("accuracy_images", Column("n\nimages", numeric=True, optional=True), str),
    Field("top1_agreement", Column("agree\n%", numeric=True, optional=True), lambda v: percent(v, 1)),
    Field("peak_memory_mib", Column("peak\nMiB", numeric=True, optional=True), number),
    Field("format", Column("format", optional=True), str),
)


def _key(row: dict | None) -> tuple | None:
    return None if row is None else (row["variant"], row["device"])


def marks(row: dict, front: list[dict], chosen: dict | None) -> str:
    """★ for the pick and ◆ for every Pareto-optimal row (the pick shows both)."""
    return (PICK_MARK if _key(row) == _key(chosen) else "") + \
        (FRONT_MARK if _key(row) in {_key(f) for f in front} else "")


def measured_table(rows: list[dict], front: list[dict], chosen: dict | None) -> tuple[list[Column], list[list[str]]]:
    """The columns and cells of the measured rows (status ok), variant names carrying their marks."""
    cells = []
    for row in rows:
        if row.get("status") != "ok":
            continue
        mark = marks(row, front, chosen)
        cells.append([f.text(row.get(f.key)) + (f" {mark}" if f.key == "variant" and mark else "")
                      if row.get(f.key) is not None else "–" for f in FIELDS])
    return [f.column for f in FIELDS], cells


def not_measured(rows: list[dict]) -> list[str]:
    """One full-length line per failed variant or unavailable device (not one per variant x device)."""
    built = {r["variant"] for r in rows if r.get("size_mb") is not None}  # failed builds have no file size
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("status") != "ok":
            groups.setdefault(row.get("status") or "not measured", []).append(row)
    lines = []
    for status, group in groups.items():
        kind, _, reason = status.partition(": ")
        variants = list(dict.fromkeys(r["variant"] for r in group))
        devices = list(dict.fromkeys(r["device"] for r in group))
        if len(variants) == 1 and variants[0] not in built:
            outcome = "unavailable here" if kind == "unavailable" else "not built"
            lines.append(f"variant {variants[0]}: {outcome}: {reason or kind}")
        elif len(devices) == 1:
            which = "every variant" if set(variants) == built else ", ".join(variants)
            lines.append(f"device {devices[0]}: {kind} for {which}: {reason}")
        else:
            pairs = ", ".join(f"{r['variant']}@{r['device']}" for r in group)
            lines.append(f"{pairs}: {status}")
    return lines


def pick_text(chosen: dict | None) -> str:
    if not chosen:
        return "no variant meets every constraint"
    return (f"{chosen['variant']} on {chosen['device']}: {number(chosen['size_mb'])} MB, "
            f"p50 {number(chosen['p50_ms'])} ms, top-1 {percent(chosen['accuracy'])} % "
            f"(drop {signed(chosen.get('accuracy_drop_pts'))} pts)")


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
    plot = pareto_png(measured, front, out_dir / "pareto.png", title=summary["name"], chosen=chosen,
                      constraints=constraints, reference_accuracy=reference)
    summary = dict(summary, pick=chosen, pareto=[f"{r['variant']}@{r['device']}" for r in front],
                   environment=library_versions("tensorflow", "tf-keras", "tensorflow-model-optimization",
                                                "ai-edge-litert", "onnxruntime", "tf2onnx", "numpy"),
                   machine=machine_record())
    reproduce = reproduce_command(summary["recipe"], summary["output"], cwd=Path.cwd())
    facts = [("Pick", pick_text(chosen)), ("Constraints", describe_constraints(constraints)),
             ("Float top-1", f"{percent(reference)} % on the test images"), ("Drop", DROP_EXPLAINED),
             ("Marks", MARKS_EXPLAINED)]
    columns, cells = measured_table(rows, front, chosen)
    header = [c.header.replace("\n", " ") for c in columns]
    numeric = frozenset(i for i, c in enumerate(columns) if c.numeric)
    highlight = {i for i, cell in enumerate(cells) if PICK_MARK in cell[0]}
    missing = not_measured(rows)
    stage_header = ["stage", "status", "seconds", "error"]
    stage_rows = [[s["name"], "skipped (unchanged)" if s["skipped"] else
                   ("failed" if s["error"] else "unavailable here" if s.get("unavailable") else "ran"),
                   f"{s['seconds']:.1f}", one_line(s["error"] or s.get("unavailable") or "")]
                  for s in summary["stages"]]
    machine = summary["machine"]  # latencies and float results depend on the CPU and its ISA features
    environment = [[k, v] for k, v in summary["environment"].items()] + [
        ["CPU", f"{machine['cpu']} ({machine['cores']} cores, {machine['arch']})"],
        ["CPU features", " ".join(machine["cpu_features"]) or "none of those that select kernels"]]
    markdown = "\n".join(
        [f"# edgekit run: {summary['name']}", ""] + [f"- **{label}:** {value}" for label, value in facts] +
        ["", "![Pareto front](pareto.png)", "", "## Measurements", "", html_report.markdown_table(header, cells, numeric=numeric), ""] +
        (["## Not measured", ""] + [f"- {line}" for line in missing] + [""] if missing else []) +
        ["## Stages", "", html_report.markdown_table(stage_header, stage_rows), "",
         f"Wall time: {summary['wall_time_s']} s.", "", "## Environment", "",
         html_report.markdown_table(["component", "version"], environment), "",
         "## Reproduce", "", REPRODUCE_FROM, "", f"```\n{reproduce}\n```", f"Seed: {summary['seed']}.", ""])
    page = html_report.page(
        f"edgekit run: {summary['name']}", html_report.summary(facts), html_report.image(plot, "Pareto front"),
        html_report.heading("Measurements"), html_report.table(header, cells, numeric=numeric, highlight=highlight),
        *([html_report.heading("Not measured"), html_report.notes(missing)] if missing else []),
        html_report.heading("Stages"), html_report.table(stage_header, stage_rows, numeric=frozenset({2})),
        html_report.paragraph(f"Wall time: {summary['wall_time_s']} s."), html_report.heading("Environment"),
        html_report.table(["component", "version"], environment), html_report.heading("Reproduce"),
        html_report.paragraph(REPRODUCE_FROM), html_report.preformatted(reproduce), html_report.paragraph(f"Seed: {summary['seed']}."))
    paths = {"report_json": out_dir / "report.json", "report_md": out_dir / "report.md",
             "report_html": out_dir / "report.html", "pareto_png": plot}
    write_text_atomic(paths["report_md"], markdown)
    write_text_atomic(paths["report_html"], page)
    write_json_atomic(paths["report_json"], summary)
    return {"pick": chosen, "pareto": summary["pareto"], "reports": {k: str(v) for k, v in paths.items()}}
