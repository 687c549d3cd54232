"""``edgekit monitor``: drift report of a device's prediction log against the model's reference profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag
from edgekit.monitoring.drift import DEFAULT_THRESHOLDS, THRESHOLD_HELP

_THRESHOLDS = "; ".join(f"{name}={value:g} ({THRESHOLD_HELP[name]})" for name, value in DEFAULT_THRESHOLDS.items())


@app.command("monitor")
def monitor_command(
    log: Annotated[Path, typer.Argument(help="The SQLite prediction log written by `edgekit predict --log` "
                                             "(or Predictor(..., log=PATH)).")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help="The model artifact (folder or file) that wrote "
                                               "the log; its reference_profile.json is the baseline.")] = None,
    reference: Annotated[Path | None, typer.Option("--reference", help="Baseline instead of the model's own: a "
                                                   "reference_profile.json, or a folder of images like the training "
                                                   "data (for a model edgekit did not make; needs --model).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write monitor.json, monitor.md and (with "
                                             "matplotlib) monitor.html + drift.png here.")] = None,
    threshold: Annotated[list[str] | None, typer.Option("--threshold", help=f"Override a threshold, NAME=VALUE; "
                                                        f"repeatable. Defaults: {_THRESHOLDS}.")] = None,
    window: Annotated[float, typer.Option("--window", help="Latency percentile window in seconds.")] = 3600.0,
    last: Annotated[int | None, typer.Option("--last", min=1, help="Use only the newest N rows of the log.")] = None,
    fail_if: Annotated[list[str] | None, typer.Option("--fail-if", help='Exit 8 if this holds, e.g. "drifted_signals>0", '
                                                      '"psi_brightness>0.2", "low_confidence_rate>0.3", '
                                                      '"latency_p99_ms>20"; repeatable.')] = None,
    as_json: JsonFlag = False,
) -> None:
    """Does the device still see what the model was trained on?

    Input statistics (size, JPEG quality, brightness, contrast, colour,
    sharpness) and model signals (confidence, margin, entropy) drift when the
    Kolmogorov-Smirnov p-value is below `pvalue` AND the PSI is at least `psi`.
    Class mix: chi-square; low-confidence rate: z-test; latency per window.
    JSON and Markdown need only numpy; HTML plots need matplotlib.
    """
    from edgekit.monitoring import monitor
    from edgekit.monitoring.drift import parse_thresholds
    from edgekit.monitoring.report import verdict
    from edgekit.profiling.gates import enforce_gates

    result = monitor(log=log, model=model, reference=reference, out_dir=out,
                     thresholds=parse_thresholds(threshold or []), window_s=window, fail_if=tuple(fail_if or ()),
                     last=last)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_summary(result, verdict(result))
    enforce_gates(result)


def _print_summary(result: dict, headline: str) -> None:
    from rich.console import Console

    from edgekit.monitoring.report import feature_verdict, number
    from rich.table import Table

    console = Console()
    table = Table(title=f"{result['rows']} predictions vs the reference")
    for column in ("signal", "ref", "now", "PSI", "p", "verdict"):
        table.add_column(column, justify="left" if column in ("signal", "verdict") else "right", no_wrap=True)
    for name, feature in result["features"].items():
        table.add_row(name, number(feature["reference_mean"], 3), number(feature["current_mean"], 3),
                      number(feature["psi"], 2), number(feature["pvalue"], 2), feature_verdict(feature))
    health = result["prediction"]
    classes = health.get("predicted_class")
    if classes:
        table.add_row("class mix", "", "", "", number(classes["pvalue"], 2), "DRIFT" if classes["drifted"] else "ok")
    low = health["low_confidence_rate"]
    if "reference_rate" in low:
        table.add_row("low-conf rate", number(low["reference_rate"], 3), number(low["rate"], 3), "",
                      number(low["pvalue"], 2), "DRIFT" if low["drifted"] else "ok")
    console.print(table)
    overall = result["latency"]["overall"]
    if overall:
        console.print(f"latency p50 {overall['p50_ms']:.2f} ms, p90 {overall['p90_ms']:.2f} ms, "
                      f"p99 {overall['p99_ms']:.2f} ms over {len(result['latency']['windows'])} window(s)")
    console.print(headline)
    for row in result.get("gates", []):
        console.print(f"gate {row['gate']}: {'FAILED' if row['failed'] else 'passed'}")
    if result.get("report"):
        console.print(f"report: {result['report'].get('html', result['report']['markdown'])}")
