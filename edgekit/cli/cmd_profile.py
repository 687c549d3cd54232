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
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{Path(result['model']).name} ({result['format']}), {result['runs']} runs, times in ms")
    for column in ("device", "backend", "thr", "init", "first", "p50", "p90", "p99", "mean±std", "Δpeak MiB"):
        table.add_column(column, justify="left" if column in ("device", "backend") else "right", no_wrap=True)
    for name, device in result["devices"].items():
        if device["status"] != "ok":
            continue
        lat = device["latency"]
        delta = device["memory"]["peak_delta_mib"]
        table.add_row(name, device["backend"].removeprefix("edgekit:"), str(device["threads"]),
                      f"{device['init_ms']:.1f}", f"{device['first_inference_ms']:.2f}", f"{lat['p50_ms']:.3f}",
                      f"{lat['p90_ms']:.3f}", f"{lat['p99_ms']:.3f}", f"{lat['mean_ms']:.3f}±{lat['std_ms']:.3f}",
                      "n/a" if delta is None else f"{delta:.1f}")
    console.print(table)
    for name, device in result["devices"].items():
        if device["status"] != "ok":
            console.print(f"skipped {name}: {device['reason']}")
    accuracy = result.get("accuracy")
    if accuracy:
        model = accuracy["model"]
        if accuracy.get("parent"):
            from edgekit.metrics import describe_change

            console.print(f"accuracy on {accuracy['images']} images: top-1 {model['accuracy']:.4f} vs parent "
                          f"{accuracy['parent']['accuracy']:.4f}; {describe_change(accuracy['change'])}")
            for warning in accuracy["change"]["warnings"]:
                console.print(f"warning: {warning}")
        else:
            console.print(f"accuracy on {accuracy['images']} images: top-1 {model['accuracy']:.4f}; "
                          f"no parent comparison: {accuracy['parent_missing']}")
    for row in result.get("gates", []):
        where = "" if row["device"] == "-" else f" on {row['device']}"
        console.print(f"gate {row['gate']}{where}: {'FAILED' if row['failed'] else 'passed'}")
    if result.get("report"):
        console.print(f"report: {result['report']['html']}")
