"""`edgekit export`: a finetuned (or float ONNX) model to a deployable target file, validated against its parent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, Labels, Mean, Preprocess, Seed, Std, import_options, model_argument
from edgekit.targets import TARGETS, get_target

FloatModel = model_argument(".keras/.h5 or a SavedModel folder; for --target onnx also a float .onnx")


def option_help(name: str) -> str:
    """The help text of a target option, from the registry (the one place it is written)."""
    return next(option.help for target in TARGETS.values() for option in target.options if option.name == name)


def artifact_summary(artifact, target: str) -> dict:
    """What the export/compile commands print: the artifact, its size and the numbers in its manifest."""
    manifest = artifact.manifest
    return {"target": target, "model": str(artifact.path), "size_bytes": manifest.size_bytes,
            "format": manifest.format, "parent": manifest.parent, "validation": manifest.metrics.get("validation"),
            "metrics": {k: v for k, v in manifest.metrics.items() if k != "validation"},
            "quantization": manifest.extra.get("quantization"), "opset": manifest.extra.get("opset")}


def print_summary(summary: dict, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    line = f"wrote {summary['model']} ({summary['size_bytes'] / 1024:.0f} KiB)"
    validation = summary.get("validation")
    if validation:
        line += (f"  vs parent: max |diff| {validation['max_abs_diff']:.2e}, top-1 agreement "
                 f"{validation['top1_agreement']:.3f} on {validation['samples']} {validation['sample_source']}")
    typer.echo(line)
    accuracy = summary["metrics"].get("accuracy")
    if accuracy and validation and validation.get("min_top1_agreement") is not None:  # quantized exports
        from edgekit.metrics import describe_change

        typer.echo(f"accuracy vs parent: {describe_change(accuracy)}")
        for warning in accuracy.get("warnings", []):
            typer.echo(f"warning: {warning}", err=True)


EXPORT_TARGETS = ", ".join(name for name, target in TARGETS.items() if target.command == "export")


@app.command("export")
def export_command(
    model: FloatModel,
    target: Annotated[str, typer.Option("--target", help=f"Target format: {EXPORT_TARGETS} (see `edgekit targets`).")] = "onnx",
    int8: Annotated[bool, typer.Option("--int8", help=option_help("int8"))] = False,
    dynamic: Annotated[bool, typer.Option("--dynamic", help=option_help("dynamic"))] = False,
    opset: Annotated[int | None, typer.Option("--opset", help=option_help("opset"))] = None,
    calibration: Annotated[Path | None, typer.Option("--calibration", help=option_help("calibration"))] = None,
    calibration_samples: Annotated[int | None, typer.Option("--calibration-samples", help=option_help("calibration_samples"))] = None,
    calibrate_method: Annotated[str | None, typer.Option("--calibrate-method", help=option_help("calibrate_method"))] = None,
    simplify: Annotated[bool, typer.Option("--simplify", help=option_help("simplify"))] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder for the model and its manifest.json (default: runs/export/<target>[-int8]).")] = None,
    trust_model: Annotated[bool, typer.Option("--trust-model", help="Allow Keras models with Lambda/custom layers (runs their code).")] = False,
    labels: Labels = None,
    preprocess: Preprocess = None,
    mean: Mean = None,
    std: Std = None,
    seed: Seed = 0,
    as_json: JsonFlag = False,
) -> None:
    """Export MODEL (a finetuned artifact, your own .keras/.h5 or SavedModel; for onnx also a float .onnx) to --target.

    A model without an edgekit manifest is imported first into OUT/imported (--labels, --preprocess).

    The result is run on sample images and compared with its parent: a float export must match
    within 1e-4, a quantized one must agree on top-1 for >= 80% of images, else the export fails
    (exit 6) naming the numbers. Labels and preprocessing are embedded in the file and written to
    manifest.json. For int8/pruned TFLite use `edgekit compress`; for the Edge TPU `edgekit compile`.
    """
    chosen = get_target(target)
    if chosen.command != "export":
        from edgekit.errors import UsageError

        raise UsageError(f"target {chosen.name!r} is produced by `edgekit {chosen.command}`, not `edgekit export`",
                         fix=f"run `edgekit {chosen.command} MODEL --target {chosen.name}`")
    given = {"int8": int8, "dynamic": dynamic, "opset": opset, "calibration": calibration,
             "calibration_samples": calibration_samples, "calibrate_method": calibrate_method, "simplify": simplify}
    options = {name: value for name, value in given.items() if value is not None and value is not False}
    out_dir = out or Path("runs/export") / f"{chosen.name}{'-int8' if int8 else '-dynamic' if dynamic else ''}"
    foreign = import_options(labels=labels, preprocess=preprocess, mean=mean, std=std, trust=trust_model)
    artifact = chosen.run(model, out_dir=out_dir, general={"seed": seed, "trust": trust_model,
                                                           "import_options": foreign}, **options)
    print_summary(artifact_summary(artifact, chosen.name), as_json=as_json)
