"""`edgekit compile`: an int8 .tflite to an accelerator binary (the Edge TPU), or its static compatibility report."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.cmd_export import artifact_summary, print_summary
from edgekit.cli.options import JsonFlag, OutDir, model_argument
from edgekit.errors import UsageError
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

    chosen = get_target(target)
    if chosen.command != "compile":
        raise UsageError(f"target {chosen.name!r} is produced by `edgekit {chosen.command}`, not `edgekit compile`",
                         fix=f"run `edgekit {chosen.command} MODEL --target {chosen.name}`")
    out_dir = out or Path("runs/compile") / chosen.name
    ok, _ = chosen.available()
    if not ok and chosen.name == "edgetpu":
        _print_static_report(model, as_json=as_json)
    artifact = chosen.run(model, out_dir=out_dir)
    print_summary(artifact_summary(artifact, chosen.name), as_json=as_json)


def _print_static_report(model, *, as_json: bool) -> None:
    """The Edge TPU report judged from the file alone (printed before the compile attempt reports what is missing)."""
    from edgekit.artifacts import load_artifact
    from edgekit.targets.edgetpu import compatibility_report

    report = compatibility_report(load_artifact(model, require_manifest=False).path)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else "\n".join(report.summary_lines()))
