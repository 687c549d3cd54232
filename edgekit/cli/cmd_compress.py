"""`edgekit compress`: pruning, clustering, QAT and post-training quantization to TFLite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, ModelArg, Seed


@app.command("compress")
def compress_command(
    model: ModelArg,
    int8: Annotated[bool, typer.Option("--int8", help="Full-integer int8 (weights and activations; fastest on CPU/NPU/Edge TPU). Needs calibration images.")] = False,
    io_dtype: Annotated[str, typer.Option("--io-dtype", help="Input/output tensor type of int8 models: float32 (quantize inside), int8 or uint8 (Edge TPU / MCU style).")] = "float32",
    calibration: Annotated[Path | None, typer.Option("--calibration", help="Image folder (<class>/ images) for int8 calibration (default: the training folder in the model's manifest).")] = None,
    calibration_samples: Annotated[int, typer.Option("--calibration-samples", help="How many calibration images to use (class-stratified, seeded; >= 10).")] = 200,
    float16: Annotated[bool, typer.Option("--float16", help="float16 weights (half the size, float compute).")] = False,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Dynamic-range: int8 weights, float activations (small, but often slower than float on CPU).")] = False,
    int16x8: Annotated[bool, typer.Option("--int16x8", help="int16 activations, int8 weights (more accurate than int8, slower; needs calibration).")] = False,
    prune: Annotated[float | None, typer.Option("--prune", help="Magnitude-prune to this sparsity in (0,1) with recovery fine-tuning (e.g. 0.5); shrinks the gzip size.")] = None,
    cluster: Annotated[int | None, typer.Option("--cluster", help="Cluster each kernel into N shared values (k-means++, N >= 2) with a short fine-tune.")] = None,
    qat: Annotated[bool, typer.Option("--qat", help="Quantization-aware training, then int8 (keeps --prune sparsity / --cluster clusters).")] = False,
    train_data: Annotated[Path | None, typer.Option("--train-data", help="Training images for --prune/--cluster/--qat fine-tuning (default: the manifest's).")] = None,
    fine_tune_epochs: Annotated[int, typer.Option("--fine-tune-epochs", help="Epochs of fine-tuning for --prune/--cluster/--qat.")] = 2,
    max_accuracy_drop: Annotated[float | None, typer.Option("--max-accuracy-drop", help="With --int8: the largest top-1 drop (points) allowed. Layers to keep float are chosen on part of the eval images and the bound is certified (95% upper bound) on the rest; else it fails, naming the smallest bound the images certify.")] = None,
    eval_data: Annotated[Path | None, typer.Option("--eval-data", help="Labelled held-out images for accuracy (default: test/ or val/ beside the training folder, else the finetune's validation split, else part of the calibration images, reported as training data).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: one sub-folder (model.tflite + manifest.json) per variant.")] = Path("runs/compress"),
    trust_model: Annotated[bool, typer.Option("--trust-model", help="Allow Keras models with Lambda/custom layers (runs their code).")] = False,
    seed: Seed = 0,
    as_json: JsonFlag = False,
) -> None:
    """Compress a finetuned float model into TFLite variants, each validated against it.

    Every variant is written to OUT/<variant>/ with labels and preprocessing embedded, its
    tensors' quantization, top-1 agreement with the float parent and (with labelled held-out
    images) its accuracy drop. Options are checked before any work starts.
    """
    from edgekit.stages.compress import compress

    artifacts = compress(model=model, out_dir=out, int8=int8, float16=float16, dynamic=dynamic, int16x8=int16x8,
                         io_dtype=io_dtype, calibration=calibration, calibration_samples=calibration_samples,
                         prune=prune, cluster=cluster, qat=qat, train_data=train_data,
                         fine_tune_epochs=fine_tune_epochs, max_accuracy_drop=max_accuracy_drop, eval_data=eval_data,
                         seed=seed, trust=trust_model)
    rows = [_summary(artifact) for artifact in artifacts]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"compress {model}")
    for column in ("variant", "size", "vs float", "gzip", "agreement", "top-1 drop (95% CI)", "n"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        drop, interval = row["top1_drop_points"], row["top1_drop_interval95"]
        table.add_row(row["variant"], f"{row['size_bytes'] / 1024:.0f} KiB", f"{row['size_vs_float']:.2f}x",
                      f"{row['gzip_bytes'] / 1024:.0f} KiB", f"{row['top1_agreement']:.3f}",
                      "-" if drop is None else f"{drop:+.2f} ({interval[0]:+.1f}, {interval[1]:+.1f})",
                      str(row["images"] or "-"))
    console = Console()
    console.print(table)
    console.print("top-1 drop in points, positive = loss; CI: paired 95% interval over the n images")
    for row in rows:
        for warning in row["warnings"]:
            console.print(f"warning: {row['variant']}: {warning}")


def _summary(artifact) -> dict:
    metrics = artifact.manifest.metrics
    accuracy = metrics.get("accuracy", {})
    return {"variant": artifact.directory.name, "path": str(artifact.path), "size_bytes": metrics["size"]["bytes"],
            "size_vs_float": metrics["size"]["vs_float_keras"], "gzip_bytes": metrics["size"]["gzip_bytes"],
            "top1_agreement": metrics["validation"]["top1_agreement"],
            "max_abs_diff": metrics["validation"]["max_abs_diff"],
            "top1_drop_points": accuracy.get("drop_points"), "top1_drop_interval95": accuracy.get("interval95_points"),
            "top1_drop_upper95": accuracy.get("upper95_points"), "images": accuracy.get("images"),
            "worst_class_recall_drop": accuracy.get("worst_class_recall_drop"),
            "accuracy_source": accuracy.get("source"), "on_training_data": accuracy.get("source_is_training_data"),
            "warnings": accuracy.get("warnings", []),
            "certified": artifact.manifest.extra.get("accuracy_guard", {}).get("certified"),
            "kept_float_layers": artifact.manifest.extra.get("accuracy_guard", {}).get("kept_float_layers")}
