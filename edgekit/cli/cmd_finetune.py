"""`edgekit finetune` and `edgekit evaluate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.app import app
from edgekit.cli.options import DataDir, JsonFlag, ModelArg, Seed, Threads


@app.command("finetune")
def finetune_command(
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for model.keras, manifest.json, metrics and plots.")] = Path("runs/finetune"),
    backbone: Annotated[str, typer.Option("--backbone", "-b", help="Backbone name (see `edgekit backbones`).")] = "mobilenet_v2",
    weights: Annotated[str, typer.Option("--weights", help="'imagenet' (bundled or cached weights), 'none' (random init), or a path to a weights file.")] = "imagenet",
    input_size: Annotated[int | None, typer.Option("--input-size", help="Square input size in pixels (default: the backbone's).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Width multiplier (MobileNetV2; pretrained weights exist for 1.0 only).")] = 1.0,
    epochs: Annotated[int, typer.Option("--epochs", help="Head-training epochs on cached features (cheap: seconds each).")] = 30,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size.")] = 32,
    learning_rate: Annotated[float, typer.Option("--lr", help="Head learning rate (Adam).")] = 1e-3,
    dropout: Annotated[float, typer.Option("--dropout", help="Dropout before the classification layer.")] = 0.2,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", help="Label smoothing for the cross-entropy loss.")] = 0.1,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Flip/crop/brightness/contrast augmentation.")] = True,
    augment_copies: Annotated[int, typer.Option("--augment-copies", help="Augmented copies of the training set whose features are cached for head training.")] = 1,
    balance: Annotated[bool, typer.Option("--balance-classes", help="Weight classes inversely to their frequency (for imbalanced folders).")] = False,
    early_stopping: Annotated[int, typer.Option("--early-stopping", help="Stop head training after this many epochs without validation-loss improvement (0: off).")] = 5,
    fine_tune_layers: Annotated[int, typer.Option("--fine-tune-layers", help="Phase 2: unfreeze this many top backbone layers (BatchNorm stays frozen).")] = 0,
    fine_tune_epochs: Annotated[int, typer.Option("--fine-tune-epochs", help="Phase 2 epochs (full forward/backward passes: slow on CPU).")] = 0,
    fine_tune_lr: Annotated[float, typer.Option("--fine-tune-lr", help="Phase 2 learning rate.")] = 1e-5,
    val_data: Annotated[Path | None, typer.Option("--val-data", help="Validation image folder (<class>/ images; default: DATA/val beside DATA/train, else a seeded split).")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Held-out fraction when there is no validation folder.")] = 0.2,
    distribute: Annotated[str, typer.Option("--distribute", help="tf.distribute strategy: none, mirrored (all local GPUs) or multi_worker_mirrored (machines in TF_CONFIG).")] = "none",
    resume: Annotated[bool, typer.Option("--resume", help="Continue fine-tuning from the last checkpoint in --out.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on unreadable images instead of skipping them with a warning.")] = False,
    seed: Seed = 0,
    as_json: JsonFlag = False,
) -> None:
    """Transfer learning on a pretrained backbone from an image folder (DATA/<class>/*.jpg, or DATA/train + DATA/val).

    Phase 1 trains the head on backbone features computed once and cached; phase 2 (optional)
    fine-tunes the top layers. Writes a float model.keras with its manifest (labels, preprocessing,
    seed, metrics), metrics.json and confusion_matrix.png.
    """
    from edgekit.api import finetune
    from edgekit.stages.finetune import FinetuneConfig

    config = FinetuneConfig(
        backbone=backbone, weights=None if weights.lower() == "none" else weights, input_size=input_size, alpha=alpha,
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, dropout=dropout,
        label_smoothing=label_smoothing, augment=augment, augment_copies=augment_copies, balance_classes=balance,
        early_stopping=early_stopping, fine_tune_layers=fine_tune_layers, fine_tune_epochs=fine_tune_epochs,
        fine_tune_learning_rate=fine_tune_lr, validation_fraction=val_fraction, seed=seed)
    result = finetune(data=data, out_dir=out, config=config, resume=resume, strict=strict, distribute=distribute,
                      val_data=val_data)
    summary = {"model": str(result.artifact.path), "validation_accuracy": result.metrics["accuracy"],
               "validation_images": result.metrics["count"], "kept_epochs": result.kept_epochs,
               "timings_s": result.timings}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    kept = ", ".join(f"{phase.replace('_', '-')} epoch {k['epoch']}/{k['of']}" for phase, k in result.kept_epochs.items())
    typer.echo(f"wrote {result.artifact.path}  validation accuracy {result.metrics['accuracy']:.4f} "
               f"({result.metrics['count']} images, {result.timings['total_s']:.1f} s; kept {kept}: best "
               "validation accuracy)")


@app.command("evaluate")
def evaluate_command(
    model: ModelArg,
    data: DataDir,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write evaluation.json and confusion_matrix.png here.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Also report top-k accuracy.")] = 5,
    threads: Threads = None,
    trust_model: Annotated[bool, typer.Option("--trust-model", help="Allow Keras models with Lambda/custom layers (runs their code).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Accuracy, top-k, per-class precision/recall/F1 and confusion matrix of MODEL on labelled images in DATA."""
    from edgekit.api import evaluate

    report = evaluate(model=model, data=data, out_dir=out, top_k=top_k, threads=threads, trust=trust_model)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    from edgekit.tables import Column, percent, print_table

    print_table(f"{Path(report['model']).name} on {report['data']}: top-1 {percent(report['accuracy'])} %",
                [Column("class")] + [Column(h, numeric=True) for h in ("precision", "recall", "F1", "support")],
                [[name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"])]
                 for name, row in report["per_class"].items()])
