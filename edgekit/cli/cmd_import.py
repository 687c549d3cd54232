"""`edgekit import`: your own .keras/.h5, SavedModel, .tflite or .onnx model as an edgekit artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, Labels, Mean, Preprocess, Size, Std, TrustModel, import_options


@app.command("import")
def import_command(
    model: Annotated[Path, typer.Argument(help="A .keras/.h5/.tflite/.onnx file or a SavedModel folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the copied model and its manifest.json "
                                      "(never the model's own folder).")],
    labels: Labels = None,
    preprocess: Preprocess = None,
    mean: Mean = None,
    std: Std = None,
    size: Size = None,
    train_data: Annotated[Path | None, typer.Option("--train-data", help="The model's training images (<class>/ "
                                                    "folders), recorded as the default for --calibration and "
                                                    "--train-data of later stages.")] = None,
    eval_data: Annotated[Path | None, typer.Option("--eval-data", help="Labelled held-out images, recorded as the "
                                                   "default --eval-data of later stages.")] = None,
    trust_model: TrustModel = False,
    as_json: JsonFlag = False,
) -> None:
    """Turn your own model into an artifact every stage takes (compress, export, compile, profile, predict).

    The input shape, dtype and quantization are read from the model; labels come from --labels
    (else class_0..N-1); normalisation from --preprocess or --mean/--std, or for uint8/int8 inputs
    from the input's quantization (raw pixels). The manifest records the source's path and sha256.
    Stages given a model without a manifest do the same import into OUT/imported themselves.
    """
    from edgekit.importer import import_model

    artifact = import_model(model=model, out_dir=out, options=import_options(
        labels=labels, preprocess=preprocess, mean=mean, std=std, size=size, trust=trust_model,
        train_data=train_data, eval_data=eval_data))
    manifest = artifact.manifest
    summary = {"model": str(artifact.path), "format": manifest.format, "source": manifest.extra["source"],
               "input": manifest.input, "classes": len(manifest.labels), "labels": manifest.options["labels"],
               "preprocessing": manifest.preprocessing, "preprocessing_source": manifest.extra["preprocessing_source"]}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    pre = manifest.preprocessing
    typer.echo(f"imported {manifest.extra['source']['path']} -> {artifact.path}\n"
               f"  input {manifest.input['shape']} {manifest.input['dtype']} ({manifest.input['layout']}), "
               f"{len(manifest.labels)} classes ({summary['labels']})\n"
               f"  preprocessing: mean {pre['mean']}, std {pre['std']} ({summary['preprocessing_source']})")
