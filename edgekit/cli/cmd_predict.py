"""``edgekit predict``: classify one image or a folder with the on-device runtime (no TensorFlow import)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, Labels, Mean, ModelArg, Preprocess, Size, Std, Threads
from edgekit.errors import DataError
from edgekit.importer import normalisation, parse_channels, read_labels


def preprocessing_option(size: int | None, preprocess: str | None, mean: str | None, std: str | None) -> dict | None:
    """--preprocess/--mean/--std (and --size) as a Predictor preprocessing dict; the size defaults to the model's."""
    chosen = normalisation(preprocess, parse_channels(mean, "--mean") if mean else None,
                           parse_channels(std, "--std") if std else None)
    if size is not None:
        chosen = {**(chosen or {}), "size": [size, size]}
    return chosen


@app.command("predict")
def predict(
    model: ModelArg,
    target: Annotated[Path, typer.Argument(metavar="IMAGE_OR_FOLDER", help="An image file, or a folder (searched recursively).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many labels to show per image.")] = 5,
    json_out: JsonFlag = False,
    threads: Threads = None,
    accelerator: Annotated[str, typer.Option("--accelerator", "-a",
                                             help="cpu (XNNPACK) | cpu-reference (no delegates) | gpu | edgetpu.")] = "cpu",
    labels: Labels = None,
    preprocess: Preprocess = None,
    size: Size = None,
    mean: Mean = None,
    std: Std = None,
) -> None:
    """Classify an image (or every image in a folder) with a .tflite/.onnx model, on the device runtime.

    Input size, dtype and quantization are read from the model. A uint8/int8-input model (Coral's
    *_quant.tflite) takes raw pixels through its quantization; a float model without edgekit
    metadata needs --preprocess (or --mean/--std). Without --labels outputs are named class_0..N-1.
    """
    from edgekit.runtime import Predictor

    if not target.exists():
        raise DataError(f"{target} does not exist", fix="pass an image file or a folder of images")
    predictor = Predictor(model, threads=threads, accelerator=accelerator,
                          labels=read_labels(labels) if labels else None,
                          preprocessing=preprocessing_option(size, preprocess, mean, std))
    if target.is_dir():
        results = predictor.predict_folder(target, top_k=top_k)
        if not results:
            raise DataError(f"no images found in {target}", fix="pass a folder with .jpg/.png/... files")
    else:
        ranked = predictor.predict(target, top_k=top_k)
        results = [{"path": str(target), "top_k": [{"label": l, "score": s} for l, s in ranked]}]
    if json_out:
        typer.echo(json.dumps({"model": str(predictor.path), "backend": predictor.backend,
                               "accelerator": accelerator, "results": results}, indent=2))
        return
    _print_table(results, predictor, single=not target.is_dir())


def _print_table(results: list[dict], predictor, *, single: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{predictor.path.name} on {predictor.backend} ({predictor.accelerator})")
    if single:
        table.add_column("rank", justify="right")
        table.add_column("label")
        table.add_column("score", justify="right")
        for rank, entry in enumerate(results[0]["top_k"], 1):
            table.add_row(str(rank), entry["label"], f"{entry['score']:.4f}")
    else:
        table.add_column("image")
        table.add_column("top-1")
        table.add_column("score", justify="right")
        table.add_column("others")
        for item in results:
            if "error" in item:
                table.add_row(item["path"], "[red]error[/red]", "", item["error"])
                continue
            first, *rest = item["top_k"]
            table.add_row(item["path"], first["label"], f"{first['score']:.4f}",
                          ", ".join(f"{e['label']} {e['score']:.2f}" for e in rest))
    console.print(table)
