"""``edgekit predict``: classify one image or a folder with the on-device runtime (no TensorFlow import)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, Labels, Mean, Preprocess, Size, Std, Threads, model_argument
from edgekit.errors import DataError, UsageError
from edgekit.importer import normalisation, parse_channels, read_labels
from edgekit.runtime.predlog import DEFAULT_MAX_MB, PredictionLog

DeviceModel = model_argument(".tflite/.onnx")


def preprocessing_option(size: int | None, preprocess: str | None, mean: str | None, std: str | None) -> dict | None:
    """--preprocess/--mean/--std (and --size) as a Predictor preprocessing dict; the size defaults to the model's."""
    chosen = normalisation(preprocess, parse_channels(mean, "--mean") if mean else None,
                           parse_channels(std, "--std") if std else None)
    if size is not None:
        chosen = {**(chosen or {}), "size": [size, size]}
    return chosen


@app.command("predict")
def predict(
    model: DeviceModel,
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
    log: Annotated[Path | None, typer.Option("--log", help="Append one row per prediction to this SQLite log "
                                             "(for `edgekit monitor`).")] = None,
    log_images: Annotated[float, typer.Option("--log-images", min=0.0, max=1.0, help="Share of inputs (0..1) kept in "
                                              "the log as a JPEG at the model's size, for later labelling.")] = 0.0,
    log_max_mb: Annotated[float, typer.Option("--log-max-mb", min=0.05, help="Size bound of the log; the oldest rows "
                                              "rotate out beyond it.")] = DEFAULT_MAX_MB,
) -> None:
    """Classify an image (or every image in a folder) with a .tflite/.onnx model, on the device runtime.

    Input size, dtype and quantization are read from the model. A uint8/int8-input model (Coral's
    *_quant.tflite) takes raw pixels through its quantization; a float model without edgekit
    metadata needs --preprocess (or --mean/--std). Without --labels outputs are named class_0..N-1.
    """
    from edgekit.runtime import Predictor

    if not target.exists():
        raise DataError(f"{target} does not exist", fix="pass an image file or a folder of images")
    if log is None and (log_images or log_max_mb != DEFAULT_MAX_MB):
        raise UsageError("--log-images/--log-max-mb need --log", fix="pass --log PATH (a SQLite file)")
    predictor = Predictor(model, threads=threads, accelerator=accelerator,
                          labels=read_labels(labels) if labels else None,
                          preprocessing=preprocessing_option(size, preprocess, mean, std),
                          log=PredictionLog(log, sample_images=log_images, max_mb=log_max_mb) if log else None)
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
    from edgekit.tables import Column, print_table

    title = f"{predictor.path.name} on {predictor.backend} ({predictor.accelerator})"
    if single:
        print_table(title, [Column("rank", numeric=True), Column("label"), Column("score", numeric=True)],
                    [[str(rank), e["label"], f"{e['score']:.4f}"] for rank, e in enumerate(results[0]["top_k"], 1)])
        return
    cells, errors = [], []
    for item in results:
        if "error" in item:
            errors.append(f"{item['path']}: error: {item['error']}")
            continue
        first, *rest = item["top_k"]
        cells.append([item["path"], first["label"], f"{first['score']:.4f}",
                      ", ".join(f"{e['label']} {e['score']:.2f}" for e in rest)])
    print_table(title, [Column("image"), Column("top-1"), Column("score", numeric=True), Column("next", optional=True)],
                cells, notes=errors)
