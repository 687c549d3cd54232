"""`edgekit profile`: latency, memory and accuracy loss of a model on one or more devices, with CI gates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, ModelArg, Threads


@app.command("profile")
def profile_command(
    model: ModelArg,
    device: Annotated[list[str] | None, typer.Option("--device", "-d", help="Device profile name or YAML path; repeat for several (see `edgekit devices`).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Labelled image folder (class folders = the model's labels): measure accuracy loss against the float parent.")] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed inference runs per device.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed warm-up runs before the timed ones.")] = 5,
    budget: Annotated[float | None, typer.Option("--budget-s", help="Time the runs for this many seconds instead of --runs.")] = None,
    threads: Threads = None,
    fail_if: Annotated[list[str] | None, typer.Option("--fail-if", help='Fail (exit 8) if this holds, e.g. "accuracy_drop>1" or "p50_ms>10"; repeatable.')] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write profile.json, report.md, report.html and plots here.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Latency (init, first, min/mean/std/p50/p90/p99), peak memory and accuracy loss of MODEL on each device.

    Each device is measured in a fresh process pinned to its threads; remote (SSH) devices get the
    model and a small runner script copied over. Devices unavailable here are listed as skipped.
    """
    from edgekit.profiling import profile
    from edgekit.profiling.gates import enforce_gates

    result = profile(model=model, devices=tuple(device or ("cpu",)), data=data, runs=runs, warmup=warmup,
                     threads=threads, fail_if=tuple(fail_if or ()), budget_s=budget, report_dir=report)
    if as_json:
        slim = {**result, "devices": {n: {k: v for k, v in d.items() if k != "times_ms"} for n, d in result["devices"].items()}}
        typer.echo(json.dumps(slim, indent=2))
    else:
        _print_tables(result)
    enforce_gates(result)


def _print_tables(result: dict) -> None:
    from edgekit.profiling.report import accuracy_line, gate_lines, latency_table, unavailable_devices
    from edgekit.tables import console, print_table

    out = console()
    columns, rows = latency_table(result)
    print_table(f"{Path(result['model']).name} ({result['format']}), {result['runs']} runs per device", columns, rows,
                caption="peak +: peak memory added by loading and running the model",
                notes=unavailable_devices(result), out=out)
    if result.get("accuracy"):
        out.print(f"accuracy: {accuracy_line(result['accuracy'])}", markup=False)
    for line in gate_lines(result):
        out.print(f"gate {line}", markup=False)
    if result.get("report"):
        out.print(f"report: {result['report']['html']}", markup=False, overflow="fold")
