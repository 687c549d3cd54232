"""Why latency pruning collapsed MobileNetV2 (issue 19): stale BatchNormalization statistics, measured without training.

The clothing-small MobileNetV2 224 float parent (head-only finetune) with every 1x1 convolution
magnitude-pruned at once to 50% and 70%, scored on clothing-small test/ (372 photos) twice: with the
BatchNormalization statistics of the dense model (what a fine-tune with frozen BatchNormalization
trains against) and with them re-estimated on 320 training photos through the pruned weights
(``edgekit.stages.tfmot_wrappers.reestimate_batchnorm``'s method: the running mean of batch statistics).
The dense model re-estimated the same way is the control (its head was trained on the old statistics).

    EDGEKIT_SHARED=/work/shared PYTHONPATH=$PWD .venv/bin/python benchmarks/sparse_batchnorm_diagnosis.py \
        [--float runs/sparse/float]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import harness  # noqa: E402
from _common import CLOTHING, clothing_float  # noqa: E402

LEVELS = (0.5, 0.7)
CALIBRATION_IMAGES = 320


def measure(float_dir: Path | None) -> dict:
    import numpy as np

    from edgekit._tf import import_tf
    from edgekit.artifacts import load_artifact
    from edgekit.data import calibration_sample, load_folder_arrays, normalize, scan_image_folder
    from edgekit.keras_io import load_float_model
    from edgekit.stages.prune import is_pointwise_conv

    _, tf_keras = import_tf()
    env = harness.environment()
    parent = load_artifact(float_dir) if float_dir else clothing_float(224)
    preprocessing, labels = parent.manifest.preprocessing_spec(), parent.manifest.labels
    test_pixels, truth = load_folder_arrays(scan_image_folder(CLOTHING / "test", classes=labels), preprocessing)
    test = normalize(test_pixels, preprocessing)
    train = calibration_sample(scan_image_folder(CLOTHING / "train", classes=labels), CALIBRATION_IMAGES, seed=0)
    train_pixels, _ = load_folder_arrays(train, preprocessing)
    train_inputs = normalize(train_pixels, preprocessing)
    model = load_float_model(parent.path)
    dense_weights = [w.copy() for w in model.get_weights()]
    pointwise = [layer for layer in model.layers if is_pointwise_conv(layer)]
    norms = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]

    def top1() -> float:
        return round(float(np.mean(np.argmax(model.predict(test, batch_size=64, verbose=0), 1) == truth)), 4)

    def prune(level: float) -> None:
        for layer in pointwise:
            kernel = layer.kernel.numpy()
            layer.kernel.assign(np.where(np.abs(kernel) <= np.quantile(np.abs(kernel), level), 0.0, kernel))

    def reestimate() -> None:
        saved = [layer.momentum for layer in norms]
        for layer in norms:
            layer.trainable = True
        for batch_index, start in enumerate(range(0, len(train_inputs), 32)):
            for layer in norms:
                layer.momentum = batch_index / (batch_index + 1)
            model(train_inputs[start:start + 32], training=True)
        for layer, momentum in zip(norms, saved):
            layer.momentum, layer.trainable = momentum, False

    started = time.perf_counter()
    top1s = {"dense": top1()}
    for level in LEVELS:
        model.set_weights(dense_weights)
        prune(level)
        top1s[f"1x1 pruned {level:.0%}, dense model's BN statistics"] = top1()
        reestimate()
        top1s[f"1x1 pruned {level:.0%}, BN statistics re-estimated"] = top1()
    model.set_weights(dense_weights)
    reestimate()
    top1s["dense, BN statistics re-estimated (control)"] = top1()
    return {"what": "top-1 of the clothing-small MobileNetV2 224 parent after one-shot magnitude pruning of its 1x1 "
                    "convolutions (no fine-tune), BatchNormalization statistics old vs re-estimated",
            "float_parent": harness.relative(parent.path), "test_images": int(len(truth)),
            "reestimation_images": int(len(train_inputs)), "top1": top1s,
            "elapsed_s": round(time.perf_counter() - started, 1), "environment": harness.finish(env)}


def markdown(result: dict) -> list[str]:
    lines = ["# Why latency pruning collapsed: BatchNormalization statistics (issue 19)", "", f"{result['what']}; "
             f"{result['test_images']} test photos; re-estimation on {result['reestimation_images']} training photos.",
             "", "| model | top-1 |", "|---|---:|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in result["top1"].items()]
    return lines + harness.environment_lines(result["environment"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float", type=Path, default=None, help="finetuned float artifact (default: finetune one)")
    args = parser.parse_args()
    if not CLOTHING.is_dir():
        print(f"skipped: {CLOTHING} is absent (set EDGEKIT_SHARED)")
        return 0
    result = measure(args.float)
    harness.write_results("sparse_batchnorm_diagnosis", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
