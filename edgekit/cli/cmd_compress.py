"""`edgekit compress`: pruning, clustering, QAT and post-training quantization to TFLite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, Seed, model_argument

FloatModel = model_argument(".keras, from `edgekit finetune`")


@app.command("compress")
def compress_command(
    model: FloatModel,
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
    max_accuracy_drop: Annotated[float | None, typer.Option("--max-accuracy-drop", help="With --int8: the largest top-1 drop (in points) allowed; the worst layers stay float until it holds, else it fails.")] = None,
    eval_data: Annotated[Path | None, typer.Option("--eval-data", help="Labelled held-out images for accuracy (default: test/ or val/ beside the training folder, else part of the calibration images).")] = None,
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

    table = Table(title=f"compress {model} (x: vs the parent as float32 .tflite, "
                        f"{rows[0]['float32_tflite_bytes'] / 1024:.0f} KiB, gzip {rows[0]['float32_tflite_gzip_bytes'] / 1024:.0f} KiB)")
    for column in ("variant", "size", "gzip", "agreement", "top-1 drop"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row, artifact in zip(rows, artifacts):
        drop = row["top1_drop_points"]
        sparse = artifact.manifest.options.get("prune") or artifact.manifest.options.get("cluster")
        gzip = f"{row['gzip_bytes'] / 1024:.0f} KiB" + (f" {row['gzip_vs_float32_tflite_gzip']:.2f}x" if sparse else "")
        table.add_row(row["variant"], f"{row['size_bytes'] / 1024:.0f} KiB {row['size_vs_float32_tflite']:.2f}x", gzip,
                      f"{row['top1_agreement']:.3f}", "-" if drop is None else f"{drop:+.2f} pt")
    Console().print(table)


def _summary(artifact) -> dict:
    metrics = artifact.manifest.metrics
    size = metrics["size"]
    return {"variant": artifact.directory.name, "path": str(artifact.path), "size_bytes": size["bytes"],
            "gzip_bytes": size["gzip_bytes"], "float32_tflite_bytes": size["float32_tflite_bytes"],
            "float32_tflite_gzip_bytes": size["float32_tflite_gzip_bytes"],
            "size_vs_float32_tflite": size["vs_float32_tflite"],
            "gzip_vs_float32_tflite_gzip": size["gzip_vs_float32_tflite_gzip"],
            "top1_agreement": metrics["validation"]["top1_agreement"],
            "max_abs_diff": metrics["validation"]["max_abs_diff"],
            "top1_drop_points": metrics.get("accuracy", {}).get("top1_drop_points"),
            "kept_float_layers": artifact.manifest.extra.get("accuracy_guard", {}).get("kept_float_layers")}
