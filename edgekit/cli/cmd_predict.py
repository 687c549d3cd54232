"""``edgekit predict``: classify one image or a folder with the on-device runtime (no TensorFlow import).

The options and the work live in :mod:`edgekit.cli.predict_core`, which the console entry point also
runs without Typer for a fast start; this module gives them to the Typer app (help, errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, ModelArg, Threads, typer_option
from edgekit.cli.predict_core import OPTIONS, run_predict


@app.command("predict")
def predict(
    model: ModelArg,
    target: Annotated[Path, typer.Argument(metavar="IMAGE_OR_FOLDER", help="An image file, or a folder (searched recursively).")],
    top_k: Annotated[int, typer_option(OPTIONS["top_k"])] = OPTIONS["top_k"].default,
    json_out: JsonFlag = False,
    threads: Threads = None,
    accelerator: Annotated[str, typer_option(OPTIONS["accelerator"])] = OPTIONS["accelerator"].default,
    labels: Annotated[Path | None, typer_option(OPTIONS["labels"])] = None,
    size: Annotated[int | None, typer_option(OPTIONS["size"])] = None,
    mean: Annotated[str | None, typer_option(OPTIONS["mean"])] = None,
    std: Annotated[str | None, typer_option(OPTIONS["std"])] = None,
) -> None:
    """Classify an image (or every image in a folder) with a .tflite/.onnx model, on the device runtime."""
    run_predict(model=model, target=target, top_k=top_k, json_out=json_out, threads=threads, accelerator=accelerator,
                labels=labels, size=size, mean=mean, std=std)
