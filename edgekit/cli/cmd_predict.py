"""``edgekit predict``: classify one image or a folder with the on-device runtime (no TensorFlow import).

The options and the work live in :mod:`edgekit.cli.predict_core`, which the console entry point also
runs without Typer for a fast start; this module gives them to the Typer app (help, errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, Labels, Mean, Preprocess, Size, Std, Threads, model_argument, typer_option
from edgekit.cli.predict_core import OPTIONS, run_predict

DeviceModel = model_argument(".tflite/.onnx")


@app.command("predict")
def predict(
    model: DeviceModel,
    target: Annotated[Path, typer.Argument(metavar="IMAGE_OR_FOLDER", help="An image file, or a folder (searched recursively).")],
    top_k: Annotated[int, typer_option(OPTIONS["top_k"])] = OPTIONS["top_k"].default,
    json_out: JsonFlag = False,
    threads: Threads = None,
    accelerator: Annotated[str, typer_option(OPTIONS["accelerator"])] = OPTIONS["accelerator"].default,
    labels: Labels = None,
    preprocess: Preprocess = None,
    size: Size = None,
    mean: Mean = None,
    std: Std = None,
    log: Annotated[Path | None, typer_option(OPTIONS["log"])] = None,
    log_images: Annotated[float, typer_option(OPTIONS["log_images"])] = OPTIONS["log_images"].default,
    log_max_mb: Annotated[float, typer_option(OPTIONS["log_max_mb"])] = OPTIONS["log_max_mb"].default,
) -> None:
    """Classify an image (or every image in a folder) with a .tflite/.onnx model, on the device runtime.

    Input size, dtype and quantization are read from the model. A uint8/int8-input model (Coral's
    *_quant.tflite) takes raw pixels through its quantization; a float model without edgekit
    metadata needs --preprocess (or --mean/--std). Without --labels outputs are named class_0..N-1.
    """
    run_predict(model=model, target=target, top_k=top_k, json_out=json_out, threads=threads, accelerator=accelerator,
                labels=labels, preprocess=preprocess, size=size, mean=mean, std=std, log=log, log_images=log_images,
                log_max_mb=log_max_mb)
