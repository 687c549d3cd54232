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
Force = Annotated[bool, typer.Option("--force", help="Rerun every stage even when its inputs and options are unchanged.")]
Devices = Annotated[list[str] | None, typer.Option("--device", "-d", help="Measure on these devices instead of the "
                                                                         "recipe's (repeatable; `edgekit devices`).")]
AllowFailures = Annotated[bool, typer.Option("--allow-failures", help="Exit 0 even when a requested variant failed "
                                                                      "(exit 10) or nothing meets the constraints "
                                                                      "(exit 8). Unavailable hardware never fails "
                                                                      "a run.")]


TERMINAL_COLUMNS = ("variant", "device", "size_mb", "p50_ms", "accuracy", "accuracy_drop_pts", "status")


def print_summary(summary: dict, *, as_json: bool) -> None:
    """The Pareto table and the pick (or JSON), shared by run, sweep and quickstart."""
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    from edgekit.recipes.report import COLUMNS, _table_rows

    rows = summary["rows"]
    front = [r for r in rows if r.get("pareto")]
    table = Table(title=f"{summary['name']}: float top-1 {summary['reference_accuracy']}  "
                        f"(★ pick, ◆ Pareto-optimal; full table in the report)")
    shown = [i for i, (key, _) in enumerate(COLUMNS) if key in TERMINAL_COLUMNS]
    for i in shown:
        is_status = COLUMNS[i][0] == "status"
        table.add_column(COLUMNS[i][1], overflow="ellipsis", no_wrap=True, max_width=22 if is_status else None)
    for cells in _table_rows(rows, front, summary.get("pick")):
        table.add_row(*(cells[i] for i in shown))
    console = Console()
    console.print(table)
    skipped = sum(1 for s in summary["stages"] if s["skipped"])
    console.print(f"stages: {len(summary['stages'])} ({skipped} skipped as unchanged); wall time "
                  f"{summary['wall_time_s']} s")
    chosen = summary.get("pick")
    console.print(f"pick: [bold]{chosen['variant']}[/bold] on {chosen['device']}" if chosen
                  else "pick: no variant meets every constraint")
    console.print(f"report: {summary['reports']['report_html']}")


def run_and_report(recipe: Path, *, allow_failures: bool, as_json: bool, **options) -> None:
    """Run the recipe, print its table (or JSON), then exit non-zero on failed variants or no pick."""
    from edgekit.recipes.runner import enforce_outcome, run_recipe

    summary = run_recipe(recipe_path=recipe, **options)
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
    under the recipe's constraints (max_accuracy_drop, max_latency_ms, max_size_mb)."""
    run_and_report(recipe, out_dir=out, force=force, devices=device, sweep=True, allow_failures=allow_failures,
                   as_json=as_json)


@app.command("recipe-schema")
def recipe_schema_command(as_json: JsonFlag = False) -> None:
    """Print the recipe layout: every key with its type and bounds (--json: the JSON Schema)."""
    from edgekit.recipes.schema import RECIPE_SCHEMA, recipe_layout

    typer.echo(json.dumps(RECIPE_SCHEMA, indent=2) if as_json else recipe_layout())


@app.command("quickstart")
def quickstart_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/quickstart"),
    force: Force = False,
    as_json: JsonFlag = False,
) -> None:
    """Offline demo on the embedded dataset (scikit-learn's handwritten digits): finetune a pretrained
    MobileNetV2, quantize it to int8 (and float16, ONNX int8), measure size, latency and accuracy loss,
    and write a report. Needs no data and no network."""
    from edgekit.recipes.runner import shipped_recipe

    run_and_report(shipped_recipe("quickstart"), out_dir=out, force=force, allow_failures=False, as_json=as_json)
