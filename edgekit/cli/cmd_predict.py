"""``edgekit predict``: classify one image or a folder with the on-device runtime (no TensorFlow import)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, ModelArg, Threads
from edgekit.errors import DataError, UsageError
from edgekit.runtime.predlog import DEFAULT_MAX_MB, PredictionLog


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
    model: ModelArg,
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
    log: Annotated[Path | None, typer.Option("--log", help="Append one row per prediction to this SQLite log "
                                             "(for `edgekit monitor`).")] = None,
    log_images: Annotated[float, typer.Option("--log-images", min=0.0, max=1.0, help="Share of inputs (0..1) kept in "
                                              "the log as a JPEG at the model's size, for later labelling.")] = 0.0,
    log_max_mb: Annotated[float, typer.Option("--log-max-mb", min=0.05, help="Size bound of the log; the oldest rows "
                                              "rotate out beyond it.")] = DEFAULT_MAX_MB,
) -> None:
    """Classify an image (or every image in a folder) with a .tflite/.onnx model, on the device runtime."""
    from edgekit.runtime import Predictor

    if not target.exists():
        raise DataError(f"{target} does not exist", fix="pass an image file or a folder of images")
    if log is None and (log_images or log_max_mb != DEFAULT_MAX_MB):
        raise UsageError("--log-images/--log-max-mb need --log", fix="pass --log PATH (a SQLite file)")
    predictor = Predictor(model, threads=threads, accelerator=accelerator,
                          labels=_read_labels(labels) if labels else None, preprocessing=_preprocessing(size, mean, std),
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
