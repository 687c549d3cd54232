"""`edgekit compress`: pruning, clustering, QAT and post-training quantization to TFLite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import JsonFlag, Labels, Mean, Preprocess, Std, import_options, model_argument, stage_option
from edgekit.options import CompressOptions as C

FloatModel = model_argument(".keras/.h5 or a SavedModel folder: from `edgekit finetune`, or your own")


@app.command("compress")
def compress_command(
    model: FloatModel,
    int8: bool = stage_option(C, "int8"),
    io_dtype: str = stage_option(C, "io_dtype"),
    calibration: Annotated[Path | None, typer.Option("--calibration", help="Image folder (<class>/ images) for int8 calibration (default: the training folder in the model's manifest).")] = None,
    calibration_samples: int = stage_option(C, "calibration_samples"),
    float16: bool = stage_option(C, "float16"),
    dynamic: bool = stage_option(C, "dynamic"),
    int16x8: bool = stage_option(C, "int16x8"),
    prune: float | None = stage_option(C, "prune"),
    prune_for: str = stage_option(C, "prune_for"),
    cluster: int | None = stage_option(C, "cluster"),
    qat: bool = stage_option(C, "qat"),
    qat_distill: bool = stage_option(C, "qat_distill"),
    train_data: Annotated[Path | None, typer.Option("--train-data", help="Training images for --prune/--cluster/--qat fine-tuning (default: the manifest's).")] = None,
    fine_tune_epochs: int | None = stage_option(C, "fine_tune_epochs"),
    max_accuracy_drop: float | None = stage_option(C, "max_accuracy_drop"),
    bias_correction: bool = stage_option(C, "bias_correction"),
    equalize: bool = stage_option(C, "equalize"),
    activation_ranges: str = stage_option(C, "activation_ranges"),
    weight_rounding: str = stage_option(C, "weight_rounding"),
    eval_data: Annotated[Path | None, typer.Option("--eval-data", help="Labelled held-out images for accuracy (default: test/ or val/ beside the training folder, else the finetune's validation split, else part of the calibration images, reported as training data).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: one sub-folder (model.tflite + manifest.json) per variant.")] = Path("runs/compress"),
    trust_model: Annotated[bool, typer.Option("--trust-model", help="Allow Keras models with Lambda/custom layers (runs their code).")] = False,
    labels: Labels = None,
    preprocess: Preprocess = None,
    mean: Mean = None,
    std: Std = None,
    seed: int = stage_option(C, "seed"),
    as_json: JsonFlag = False,
) -> None:
    """Compress a float model (finetuned, or your own .keras/.h5/SavedModel) into TFLite variants, each validated against it.

    A model without an edgekit manifest is imported first into OUT/imported (labels from --labels or
    class_0..N-1, normalisation from --preprocess or --mean/--std).

    Every variant is written to OUT/<variant>/ with labels and preprocessing embedded, its
    tensors' quantization, top-1 agreement with the float parent and (with labelled held-out
    images) its accuracy drop. Options are checked before any work starts.
    """
    from edgekit.api import compress

    artifacts = compress(model=model, out_dir=out, int8=int8, float16=float16, dynamic=dynamic, int16x8=int16x8,
                         io_dtype=io_dtype, calibration=calibration, calibration_samples=calibration_samples,
                         prune=prune, prune_for=prune_for, cluster=cluster, qat=qat, qat_distill=qat_distill,
                         train_data=train_data,
                         fine_tune_epochs=fine_tune_epochs, max_accuracy_drop=max_accuracy_drop, eval_data=eval_data,
                         bias_correction=bias_correction, equalize=equalize, activation_ranges=activation_ranges,
                         weight_rounding=weight_rounding, seed=seed, trust=trust_model,
                         import_options=import_options(labels=labels, preprocess=preprocess, mean=mean, std=std,
                                                       trust=trust_model))
    rows = [_summary(artifact) for artifact in artifacts]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    print_compress_table(f"compress {model}", rows)


def print_compress_table(title: str, rows: list[dict]) -> None:
    """One row per variant: size and gzip size against the parent as a float32 .tflite, agreement, the drop
    with its paired 95% interval and the number of images it was measured on."""
    from edgekit.tables import DROP_HEADER, Column, console, number, percent, print_table, signed

    columns = [Column("variant"), Column("size\nMB", numeric=True), Column("× f32\ntflite", numeric=True),
               Column("gzip\nMB", numeric=True), Column("× f32\ngzip", numeric=True, optional=True),
               Column("agree\n%", numeric=True), Column(DROP_HEADER.replace(" (", "\n("), numeric=True),
               Column("95% CI\npts", numeric=True, optional=True), Column("n\nimages", numeric=True, optional=True)]
    cells = [[row["variant"], number(row["size_bytes"] / 1e6), f"{row['size_vs_float32_tflite']:.2f}",
              number(row["gzip_bytes"] / 1e6), f"{row['gzip_vs_float32_tflite_gzip']:.2f}",
              percent(row["top1_agreement"], 1), signed(row["top1_drop_points"]),
              "–" if not row.get("top1_drop_interval95") else
              f"{row['top1_drop_interval95'][0]:+.1f}..{row['top1_drop_interval95'][1]:+.1f}",
              str(row.get("images") or "–")]
             for row in rows]
    float_mb = rows[0]["float32_tflite_bytes"] / 1e6 if rows else 0.0
    out = console()
    print_table(title, columns, cells, out=out,
                caption=f"× f32: against the parent converted to a float32 .tflite ({float_mb:.2f} MB); "
                        "agree: top-1 agreement with the float model; CI: paired 95% interval over n images")
    for row in rows:
        for warning in row.get("warnings", []):
            out.print(f"warning: {row['variant']}: {warning}", markup=False)
        if row.get("sparse_inference"):
            from edgekit.stages.xnnpack_sparse import describe

            out.print(f"{row['variant']}: {describe(row['sparse_inference'])}", markup=False)


def _summary(artifact) -> dict:
    metrics = artifact.manifest.metrics
    accuracy = metrics.get("accuracy", {})
    size = metrics["size"]
    return {"variant": artifact.directory.name, "path": str(artifact.path), "size_bytes": size["bytes"],
            "gzip_bytes": size["gzip_bytes"], "float32_tflite_bytes": size["float32_tflite_bytes"],
            "float32_tflite_gzip_bytes": size["float32_tflite_gzip_bytes"],
            "size_vs_float32_tflite": size["vs_float32_tflite"],
            "gzip_vs_float32_tflite_gzip": size["gzip_vs_float32_tflite_gzip"],
            "top1_agreement": metrics["validation"]["top1_agreement"],
            "max_abs_diff": metrics["validation"]["max_abs_diff"],
            "top1_drop_points": accuracy.get("drop_points"), "top1_drop_interval95": accuracy.get("interval95_points"),
            "top1_drop_upper95": accuracy.get("upper95_points"), "images": accuracy.get("images"),
            "worst_class_recall_drop": accuracy.get("worst_class_recall_drop"),
            "accuracy_source": accuracy.get("source"), "on_training_data": accuracy.get("source_is_training_data"),
            "warnings": accuracy.get("warnings", []),
            "certified": artifact.manifest.extra.get("accuracy_guard", {}).get("certified"),
            "kept_float_layers": artifact.manifest.extra.get("accuracy_guard", {}).get("kept_float_layers"),
            "sparse_inference": artifact.manifest.extra.get("sparse_inference")}
