"""Does refitting the classifier after BatchNormalization re-estimation help on unseen photos? (issue 19)

Latency pruning (``compress --prune 0.7 --prune-for latency``) re-estimates every BatchNormalization's moving
statistics after the fine-tune and then refits the Dense classifier alone to the dense parent's soft targets
(``edgekit.stages.tfmot_wrappers.refit_classifier``). To measure the refit by itself, this runs that compress
exactly as ``benchmarks/sparse_pruning.py`` does, but saves the pruned model (and the teacher's targets) just
before the refit; it then compares that model's classifier as fine-tuned against it refit with the defaults,
as Keras float32 outputs on clothing-small test/ + extra/ (never used for fine-tuning), each against the float
parent: paired top-1 drop with its 95% interval, and agreement.

    EDGEKIT_SHARED=/work/shared PYTHONPATH=$PWD .venv/bin/python benchmarks/sparse_refit_ablation.py \
        [--float runs/sparse/float] [--work runs/bench-sparse] [--epochs 12] [--seed 0]

The epochs default to compress's for latency pruning (12). Other than 4 epochs (the first measurement, in
``sparse_refit_ablation.{json,md}``), the results go to ``sparse_refit_ablation_e<epochs>.{json,md}``, and other
than seed 0 (the pruning compress run's seed; the float parent is the same) to ``..._e<epochs>_s<seed>.{json,md}``.
The int8 twin (``sparse70-int8``, what ``--prune-for latency --int8`` ships beside it) is two rows: the refit model
converted to int8 as compress converts it (same calibration images), once with min/max activation ranges and once
with percentile ranges (the default since session 28), each .tflite scored on the same photos against the same
parent. The conversion with the ranges compress built its twin with must score what compress recorded; the
results say whether it did, so a cached build of either kind is re-measured, not retrained.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import harness  # noqa: E402
from _common import CLOTHING, clothing_float  # noqa: E402

from edgekit.options import LATENCY_PRUNE_FINE_TUNE_EPOCHS  # noqa: E402

FIRST_EPOCHS = 4  # the first measurement's epochs: its results kept the unsuffixed file name
RANGES_NAMES = {"minmax": "min/max activation ranges (before session 28)",
                "percentile": "percentile activation ranges (the default)"}
KEPT = ("images", "parent_top1", "top1", "drop_points", "interval95_points", "top1_agreement")


def _saved_before_refit(parent, work: Path, pool: Path, epochs: int, seed: int) -> tuple[Path, Path]:
    """The pruned model and teacher targets as compress had them just before the refit (built once)."""
    import sparse_pruning

    from edgekit.stages import prune

    # named for the method (consistent distillation and its views), so no other method's model is reused
    run = f"{sparse_pruning.distillation_method()}-e{epochs}{sparse_pruning.seed_tag(seed)}"
    model_path = work / f"before-refit-{run}.keras"
    targets_path = work / f"teacher-targets-{run}.npy"
    if model_path.is_file() and targets_path.is_file():
        return model_path, targets_path
    refit = prune.refit_classifier

    def saving_first(model, targets, loss, **options):
        model.save(model_path)
        np.save(targets_path, targets.labels)
        return refit(model, targets, loss, **options)

    prune.refit_classifier = saving_first
    try:
        sparse_pruning._variants(parent, work, pool, epochs, seed)
    finally:
        prune.refit_classifier = refit
    if not model_path.is_file():
        raise SystemExit(f"{work} holds sparse_pruning.py's compress run from before this benchmark saved the model "
                         "ahead of the refit: delete its sparse-* folder and run this first (make bench-accuracy does)")
    return model_path, targets_path


def _int8_twins(model, twin, preprocessing, pool_inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The refit model (what compress converts) as int8 under each activation-range estimator, calibrated on
    the images compress calibrated its twin on (``twin``'s manifest: folder, samples, seed), run on the pool."""
    from edgekit.data import scan_image_folder
    from edgekit.stages.compress import calibration_inputs
    from edgekit.targets.tflite_converter import PreparedModel, run_tflite

    calibration = calibration_inputs(scan_image_folder(Path(twin.options["calibration"]), classes=twin.labels),
                                     preprocessing,
                                     twin.options["calibration_samples"], twin.options["seed"])
    outputs = {}
    for ranges in RANGES_NAMES:
        with PreparedModel(model, what=f"refit pruned model ({ranges})", representative=calibration,
                           activation_ranges=ranges) as prepared:
            outputs[ranges] = run_tflite(prepared.convert("int8"), pool_inputs)
    return outputs


def measure(*, float_dir: Path | None, work: Path, epochs: int, seed: int) -> dict:
    import sparse_pruning
    from int8_accuracy import linked_pool

    from edgekit._tf import import_tf
    from edgekit.artifacts import load_artifact
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder
    from edgekit.keras_io import load_float_model
    from edgekit.metrics import accuracy_change
    from edgekit.stages.compress import recorded_activation_ranges
    from edgekit.stages.finetune import _cached_features
    from edgekit.stages.tfmot_wrappers import (DISTILLATION_TEMPERATURE, TrainingImages, distillation_loss,
                                               load_training_images, outputs_in_order, refit_classifier)

    _, tf_keras = import_tf()
    started, env = time.perf_counter(), harness.environment()
    work.mkdir(parents=True, exist_ok=True)
    parent = load_artifact(float_dir) if float_dir else clothing_float(224)
    labels, preprocessing = parent.manifest.labels, parent.manifest.preprocessing_spec()
    pool_dir = linked_pool(work / "pool", [CLOTHING / "test", CLOTHING / "extra"])
    model_path, targets_path = _saved_before_refit(parent, work, pool_dir, epochs, seed)
    compressed = sparse_pruning._variants(parent, work, pool_dir, epochs, seed)  # cached by now
    taught = compressed["sparse float32"]
    pixels, truth = load_folder_arrays(scan_image_folder(pool_dir, classes=labels), preprocessing)
    pool = TrainingImages(pixels, truth, preprocessing, pool_dir)
    parent_outputs = _cached_features(work, f"parent-pool-outputs-{parent.manifest.sha256[:16]}",  # once per parent
                                      lambda: outputs_in_order(load_float_model(parent.path), pool))
    model = tf_keras.models.load_model(model_path, compile=False)
    head = model.layers[-1]
    features = outputs_in_order(tf_keras.Model(model.inputs, head.input), pool)  # the rest is frozen: computed once
    rows = []

    def add(name: str, record: dict | None = None) -> None:
        change = accuracy_change(truth, parent_outputs, np.asarray(head(features)), labels)
        rows.append({"model": name, **{key: change[key] for key in KEPT}, "refit": record})

    add(f"sparse float32, {epochs} epochs, classifier as fine-tuned")
    train = load_training_images(CLOTHING / "train", labels, preprocessing)
    record = refit_classifier(model, replace(train, labels=np.load(targets_path)),
                              distillation_loss(DISTILLATION_TEMPERATURE), seed=seed)  # as compress refits
    add(f"sparse float32, {epochs} epochs, classifier refit", record)
    twin = compressed["pruned + int8"].manifest
    converted = _int8_twins(model, twin, preprocessing, normalize(pixels, preprocessing))
    for ranges, outputs in converted.items():
        change = accuracy_change(truth, parent_outputs, outputs, labels)
        rows.append({"model": f"pruned + int8, {RANGES_NAMES[ranges]} ({epochs} epochs, refit)",
                     **{key: change[key] for key in KEPT}, "refit": None, "activation_ranges": ranges})
    # compress's own twin: the re-conversion with its ranges must score what compress recorded
    built_with = recorded_activation_ranges(twin)
    (same,) = [row for row in rows if row.get("activation_ranges") == built_with]
    recorded = twin.metrics["accuracy"]
    compress_twin = {"activation_ranges": built_with, "drop_points": recorded["drop_points"],
                     "reproduced": all(same[key] == recorded[key] for key in ("images", "top1", "top1_agreement"))}
    pruning = taught.manifest.extra["pruning"]
    return {"what": f"the classifier refit after BatchNormalization re-estimation, alone: MobileNetV2 224 px, 1x1 "
                    f"convolutions pruned to 70% for latency, {epochs} fine-tune epochs, seed {seed}"
                    f"{sparse_pruning._distilled(pruning)}",
            "distillation": pruning["distillation"], "fine_tune": pruning["fine_tune"],
            "float_parent": harness.relative(parent.path), "fine_tune_epochs": epochs, "seed": seed, "rows": rows,
            "compress_int8_twin": compress_twin,
            "accuracy_method": "sparse float32: Keras float32 outputs (the sparse float32 .tflite computes the same "
                               "function); int8: the .tflite's outputs; on clothing-small test/ + extra/, never used "
                               "for fine-tuning; paired top-1 drop vs the "
                               "float parent (positive = loss), 95% interval from edgekit.metrics.accuracy_change",
            "elapsed_s": round(time.perf_counter() - started, 1), "environment": harness.finish(env)}


def markdown(result: dict) -> list[str]:
    lines = ["# Classifier refit after BatchNormalization re-estimation (issue 19)", "", f"{result['what']}.", "",
             f"Accuracy: {result['accuracy_method']}.", "",
             "| model | drop pts (95% CI) | n | agreement with the parent | training-image agreement before -> after |",
             "|---|---|---:|---:|---|"]
    for row in result["rows"]:
        low, high = row["interval95_points"]
        refit = row["refit"]
        train = f"{refit['train_agreement_before']} -> {refit['train_agreement_after']}" if refit else "–"
        lines.append(f"| {row['model']} | {row['drop_points']:+.2f} ({low:+.2f} to {high:+.2f}) | {row['images']} "
                     f"| {row['top1_agreement']} | {train} |")
    twin = result["compress_int8_twin"]
    lines += ["", f"compress's own int8 twin was built with {RANGES_NAMES[twin['activation_ranges']]} and recorded "
              f"{twin['drop_points']:+.2f}; the re-conversion with those ranges "
              f"{'reproduces it exactly' if twin['reproduced'] else 'does NOT reproduce it'}."]
    history = result["fine_tune"]
    lines += ["", "Fine-tune, per epoch: agreement with the parent on the batches trained on "
              f"{', '.join(f'{v:.3f}' for v in history['accuracy'])}; loss "
              f"{', '.join(f'{v:.3f}' for v in history['loss'])}."]
    return lines + harness.environment_lines(result["environment"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float", type=Path, default=None, help="finetuned float artifact (default: finetune one)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-sparse")
    parser.add_argument("--epochs", type=int, default=LATENCY_PRUNE_FINE_TUNE_EPOCHS,
                        help="pruning fine-tune epochs (default: compress's for --prune-for latency)")
    parser.add_argument("--seed", type=int, default=0, help="the pruning compress run's seed (the parent stays)")
    args = parser.parse_args()
    if not CLOTHING.is_dir():
        print(f"skipped: {CLOTHING} is absent (set EDGEKIT_SHARED)")
        return 0
    result = measure(float_dir=args.float, work=args.work, epochs=args.epochs, seed=args.seed)
    # another epoch count or seed gets its own file, so it sits beside the default's rather than replacing them
    name = "sparse_refit_ablation" + ("" if (args.epochs, args.seed) == (FIRST_EPOCHS, 0)
                                      else f"_e{args.epochs}" + (f"_s{args.seed}" if args.seed else ""))
    harness.write_results(name, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
