"""`edgekit compile`: an int8 .tflite to an accelerator binary (the Edge TPU), or its static compatibility report."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.cmd_export import artifact_summary, print_summary
from edgekit.cli.options import JsonFlag, OutDir, model_argument
from edgekit.targets import TARGETS, get_target

Int8Model = model_argument(".tflite, full int8")

COMPILE_TARGETS = ", ".join(name for name, target in TARGETS.items() if target.command == "compile")


@app.command("compile")
def compile_command(
    model: Int8Model,
    target: Annotated[str, typer.Option("--target", help=f"Accelerator to compile for: {COMPILE_TARGETS}.")] = "edgetpu",
    out: OutDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Compile a full-int8 MODEL.tflite (from `edgekit compress --int8`) for an accelerator.

    Where the compiler is not installed, prints the static compatibility report (which ops would map,
    where the graph would be cut, on/off-chip memory), writes it as JSON into --out, and exits 7.
    """
    from pathlib import Path

    from edgekit.api import compile_model, static_report

    name = get_target(target).name
    # Without the compiler, the report judged from the file is printed before the compile attempt says what is missing.
    report = static_report(model=model, target=name)
    if report is not None:
        typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else "\n".join(report.summary_lines()))
    artifact = compile_model(model=model, out_dir=out or Path("runs/compile") / name, target=name)
    print_summary(artifact_summary(artifact, name), as_json=as_json)
