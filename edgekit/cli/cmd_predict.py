"""``edgekit predict``: classify one image or a folder with the on-device runtime (no TensorFlow import)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, Threads, model_argument
from edgekit.errors import DataError, UsageError

DeviceModel = model_argument(".tflite/.onnx")


def _read_labels(path: Path) -> list[str]:
    """A labels file: a JSON list, or one label per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --labels {path}: {exc}", fix="pass a UTF-8 text file, one label per line") from exc
    if text.lstrip().startswith("["):
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--labels {path} is not a valid JSON list: {exc}", fix="one label per line also works") from exc
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels or not all(isinstance(label, str) for label in labels):
        raise UsageError(f"--labels {path} holds no labels", fix="one label per line, in the model's output order")
    return labels


def _triple(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise UsageError(f"{option} {text!r} is not a number list", fix=f"e.g. {option} 127.5,127.5,127.5") from exc
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise UsageError(f"{option} needs 1 or 3 values, got {len(values)}", fix=f"e.g. {option} 127.5,127.5,127.5")
    return values


def _preprocessing(size: int | None, mean: str | None, std: str | None) -> dict | None:
    if size is None and mean is None and std is None:
        return None
    if size is None:
        raise UsageError("--mean/--std need --size", fix="pass --size N (the model's input height and width)")
    return {"size": [size, size], "mean": _triple(mean or "0", "--mean"), "std": _triple(std or "1", "--std")}


@app.command("predict")
def predict(
    model: DeviceModel,
    target: Annotated[Path, typer.Argument(metavar="IMAGE_OR_FOLDER", help="An image file, or a folder (searched recursively).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many labels to show per image.")] = 5,
    json_out: JsonFlag = False,
    threads: Threads = None,
    accelerator: Annotated[str, typer.Option("--accelerator", "-a",
                                             help="cpu (XNNPACK) | cpu-reference (no delegates) | gpu | edgetpu.")] = "cpu",
    labels: Annotated[Path | None, typer.Option("--labels", help="Labels file (one per line or a JSON list) for models "
                                                "without embedded metadata or manifest.")] = None,
    size: Annotated[int | None, typer.Option("--size", min=1, help="Input size in pixels, for models without metadata.")] = None,
    mean: Annotated[str | None, typer.Option("--mean", help="Per-channel mean, e.g. 127.5 or 123.7,116.3,103.5.")] = None,
    std: Annotated[str | None, typer.Option("--std", help="Per-channel std, e.g. 127.5 or 58.4,57.1,57.4.")] = None,
) -> None:
    """Classify an image (or every image in a folder) with a .tflite/.onnx model, on the device runtime."""
    from edgekit.runtime import Predictor

    if not target.exists():
        raise DataError(f"{target} does not exist", fix="pass an image file or a folder of images")
    predictor = Predictor(model, threads=threads, accelerator=accelerator,
                          labels=_read_labels(labels) if labels else None, preprocessing=_preprocessing(size, mean, std))
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
