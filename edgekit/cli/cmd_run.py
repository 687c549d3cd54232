"""`edgekit run`, `edgekit sweep` and `edgekit quickstart`: whole pipelines from a recipe file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag

RecipeArg = Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML (see recipes/*.yaml; every key: "
                                                                  "`edgekit recipe-schema`).")]
RecipeOut = Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: the recipe's `output`, "
                                                                    "else runs/<name>).")]
Force = Annotated[bool, typer.Option("--force", help="Rerun every stage even when its inputs and options are "
                                                     "unchanged (without it, a guarded variant refused before is "
                                                     "refused again at once).")]
Devices = Annotated[list[str] | None, typer.Option("--device", "-d", help="Measure on these devices instead of the "
                                                                         "recipe's (repeatable; `edgekit devices`).")]
AllowFailures = Annotated[bool, typer.Option("--allow-failures", help="Exit 0 even when a requested variant failed "
                                                                      "(exit 10) or nothing meets the constraints "
                                                                      "(exit 8). Unavailable hardware never fails "
                                                                      "a run.")]


def print_summary(summary: dict, *, as_json: bool) -> None:
    """The measured rows, the pick and what was not measured (or JSON), shared by run, sweep and quickstart."""
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    from edgekit.recipes.pareto import describe_constraints
    from edgekit.recipes.report import MARKS_EXPLAINED, measured_table, not_measured, pick_text
    from edgekit.tables import console, percent, print_one_line, print_table

    rows = summary["rows"]
    front = [r for r in rows if r.get("pareto")]
    columns, cells = measured_table(rows, front, summary.get("pick"))
    out = console()
    print_table(f"{summary['name']}: float top-1 {percent(summary['reference_accuracy'])} %", columns, cells,
                caption=MARKS_EXPLAINED, out=out)
    missing = not_measured(rows)
    if missing:
        out.print("not measured (full reasons in the report):")
        for line in missing:
            print_one_line(out, line, indent=2)
    skipped = sum(1 for s in summary["stages"] if s["skipped"])
    out.print(f"stages: {len(summary['stages'])} ({skipped} skipped as unchanged); wall time "
              f"{summary['wall_time_s']} s")
    out.print(f"constraints: {describe_constraints(summary.get('constraints', {}))}", markup=False)
    out.print(f"pick: {pick_text(summary.get('pick'))}", markup=False)
    out.print(f"report: {summary['reports']['report_html']}", markup=False, overflow="fold")


def run_and_report(recipe: Path, *, out_dir: Path | None, force: bool, devices: list[str] | None = None,
                   sweep: bool = False, allow_failures: bool, as_json: bool) -> None:
    """Run the recipe, print its table (or JSON), then exit non-zero on failed variants or no pick."""
    from edgekit.api import enforce_outcome, run_recipe

    summary = run_recipe(recipe=recipe, out_dir=out_dir, force=force, devices=devices, sweep=sweep)
    print_summary(summary, as_json=as_json)
    enforce_outcome(summary, allow_failures=allow_failures)


@app.command("run")
def run_command(recipe: RecipeArg, out: RecipeOut = None, device: Devices = None, force: Force = False,
                allow_failures: AllowFailures = False, as_json: JsonFlag = False) -> None:
    """Run a recipe end to end: finetune, compress variants, exports, measurement and report.

    Stages whose inputs and options did not change since the last run are skipped (hashes in each stage
    folder), so a rerun after an interruption or a small edit resumes. The recipe layout (every key and its
    type): `edgekit recipe-schema`.
    """
    run_and_report(recipe, out_dir=out, force=force, devices=device, allow_failures=allow_failures,
                   as_json=as_json)


@app.command("sweep")
def sweep_command(recipe: RecipeArg, out: RecipeOut = None, device: Devices = None, force: Force = False,
                  allow_failures: AllowFailures = False, as_json: JsonFlag = False) -> None:
    """Build every standard variant (float16, dynamic, int8, pruned+int8, clustered+int8, QAT, guarded int8,
    ONNX fp32/int8) from the recipe's model, measure each on each device, and pick from the Pareto front
    under the recipe's constraints (max_accuracy_drop, max_latency_ms, max_size_mb): the smallest, then
    fastest, then most accurate, with sizes within 2% and p50s within 5% counted as ties."""
    run_and_report(recipe, out_dir=out, force=force, devices=device, sweep=True, allow_failures=allow_failures,
                   as_json=as_json)


@app.command("recipe-schema")
def recipe_schema_command(as_json: JsonFlag = False) -> None:
    """Print the recipe layout: every key with its type and bounds (--json: the JSON Schema)."""
    from edgekit.api import recipe_schema
    from edgekit.recipes.schema import recipe_layout

    schema = recipe_schema()
    typer.echo(json.dumps(schema, indent=2) if as_json else recipe_layout(schema))


@app.command("quickstart")
def quickstart_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/quickstart"),
    force: Force = False,
    as_json: JsonFlag = False,
) -> None:
    """Offline demo on the embedded dataset (scikit-learn's handwritten digits): finetune a pretrained
    MobileNetV2, quantize it to int8 (and float16, ONNX int8), measure size, latency and accuracy loss,
    and write a report. Needs no data and no network."""
    from edgekit.api import shipped_recipe

    run_and_report(shipped_recipe("quickstart"), out_dir=out, force=force, allow_failures=False, as_json=as_json)
