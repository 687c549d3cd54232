"""`edgekit profile`: latency, memory and accuracy loss of a model on one or more devices, with CI gates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, Labels, Mean, Preprocess, Std, Threads, import_options

Models = Annotated[list[Path], typer.Argument(
    metavar="MODEL", help="Model file (.tflite/.onnx; a .keras model must be compressed or exported first) or "
                             "the artifact folder holding it. Several: measured interleaved, with ratios against "
                             "the first.")]


@app.command("profile")
def profile_command(
    models: Models,
    device: Annotated[list[str] | None, typer.Option("--device", "-d", help="Device profile name or YAML path; repeat for several (see `edgekit devices`).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Labelled image folder (class folders = the model's labels): measure accuracy loss against the float parent.")] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed inference runs per device.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed warm-up runs before the timed ones.")] = 5,
    budget: Annotated[float | None, typer.Option("--budget-s", help="Time the runs for this many seconds instead of --runs.")] = None,
    threads: Threads = None,
    fail_if: Annotated[list[str] | None, typer.Option("--fail-if", help='Fail (exit 8) if this holds, e.g. "accuracy_drop>1" or "p50_ms>10"; repeatable.')] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write profile.json, report.md, report.html and plots here.")] = None,
    parent: Annotated[Path | None, typer.Option("--parent", help="The float model to compare accuracy against (with --data), when the one named in the manifest is not here, e.g. an artifact copied to a device.")] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="With several models: interleaved rounds (A B A B ...), each model once per round in a fresh process.")] = 5,
    labels: Labels = None,
    preprocess: Preprocess = None,
    mean: Mean = None,
    std: Std = None,
    as_json: JsonFlag = False,
) -> None:
    """Latency (init, first, min/mean/std/p50/p90/p99), peak memory and accuracy loss of MODEL on each device.

    Each device is measured in a fresh process pinned to its threads; remote (SSH) devices get the
    model and a small runner script copied over. Devices unavailable here are listed as skipped.
    With several models (e.g. float.tflite int8.tflite), they are measured interleaved in --rounds
    rounds and each is shown as a ratio against the first (median over rounds, with min and max).
    """
    from edgekit.profiling import compare, profile
    from edgekit.profiling.gates import enforce_gates

    foreign = import_options(labels=labels, preprocess=preprocess, mean=mean, std=std)
    if len(models) > 1:
        if fail_if or report or parent:
            from edgekit.errors import UsageError

            raise UsageError("--fail-if, --report and --parent apply to one model",
                             fix="profile each model on its own for gates and reports")
        compared = compare(models=models, devices=tuple(device or ("cpu",)), data=data, runs=runs, warmup=warmup,
                           rounds=rounds, threads=threads, budget_s=budget, import_options=foreign)
        if as_json:
            typer.echo(json.dumps(compared, indent=2))
        else:
            _print_comparison(compared)
        return
    result = profile(model=models[0], devices=tuple(device or ("cpu",)), data=data, runs=runs, warmup=warmup,
                     threads=threads, fail_if=tuple(fail_if or ()), budget_s=budget, report_dir=report,
                     parent=parent, import_options=foreign)
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
    else:
        out.print("accuracy: not measured (pass --data DIR of labelled <class>/ images for top-1 and the drop "
                  "vs the float parent)", markup=False)
    for line in gate_lines(result):
        out.print(f"gate {line}", markup=False)
    if result.get("report"):
        out.print(f"report: {result['report']['html']}", markup=False, overflow="fold")


def _label(path: str) -> str:
    """A short name for a model: its artifact folder for edgekit's ``model.*`` files, else the file name."""
    model = Path(path)
    return model.parent.name if model.stem == "model" else model.name


def _print_comparison(result: dict) -> None:
    """One table per device: each model's p50 and its ratio to the first, from interleaved rounds."""
    from edgekit.tables import Column, console, number, print_table

    out = console()
    sizes = {m["model"]: m for m in result["models"]}
    columns = [Column("model"), Column("p50 ms", numeric=True), Column("p50 min-max", numeric=True, optional=True),
               Column("× first\np50", numeric=True), Column("ratio\nmin-max", numeric=True, optional=True),
               Column("× first\nsize", numeric=True), Column("peak +\nMiB", numeric=True, optional=True)]
    for name, device in result["devices"].items():
        if device["status"] != "ok":
            out.print(f"skipped {name}: {device['reason']}", markup=False)
            continue
        rows = [[_label(row["model"]), number(row["p50_ms"]),
                 f"{number(row['p50_min_ms'])}-{number(row['p50_max_ms'])}",
                 f"{row['p50_ratio']['ratio']:.3f}", f"{row['p50_ratio']['min']:.2f}-{row['p50_ratio']['max']:.2f}",
                 f"{sizes[row['model']]['size_ratio']:.3f}", number(row["peak_delta_mib"])]
                for row in device["models"]]
        print_table(f"{name}, {device['threads']} thread(s): {result['rounds']} interleaved rounds × "
                    f"{result['runs']} runs", columns, rows,
                    caption="× first: against the first model (ratio < 1 = faster / smaller)", out=out)
    accuracy = result.get("accuracy")
    if accuracy:
        for i, row in enumerate(accuracy["models"]):
            versus = "the baseline" if i == 0 else f"drop {row['drop_vs_first_points']:+.2f} pts vs the first (+ = loss)"
            out.print(f"{_label(row['model'])}: top-1 {row['top1']:.4f} on {row['images']} images ({versus})",
                      markup=False)
