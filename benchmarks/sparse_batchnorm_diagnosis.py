"""Why re-estimating BatchNormalization cost even the unpruned MobileNetV2 18 points (issue 19), measured.

The clothing-small MobileNetV2 224 float parent (head-only finetune, so its BatchNormalization keeps the
ImageNet statistics its head was fit to), scored on clothing-small test/ (372 photos) after:
re-estimation as latency pruning does it (``reestimate_batchnorm``: the running mean of 32-image batch
statistics, training mode), the same with 128-image batches (finding b: small batches?), the training
images' exact statistics set directly (no batch noise at all), and ``conform_batchnorm`` (the training
images' statistics with the difference folded into scale/offset: same function) before re-estimating.
Then every 1x1 convolution magnitude-pruned at once to 70% (no fine-tune), without re-estimation
(finding c), re-estimated, and conformed first. Re-estimation on 320 train/ photos (seed 0). Also
recorded: finding a (are the re-estimation batches the parent's own input normalisation, unaugmented?)
and how far the moving statistics are from the training images'.

    EDGEKIT_SHARED=/work/shared PYTHONPATH=$PWD .venv/bin/python benchmarks/sparse_batchnorm_diagnosis.py \
        [--float runs/sparse/float]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import harness  # noqa: E402
from _common import CLOTHING, clothing_float  # noqa: E402

LEVELS = (0.7,)
REESTIMATION_IMAGES = 320  # a sample of train/: compress uses all of it, which takes 3x longer here


def _gap(model, images, norms) -> dict:
    """How far each BatchNormalization's moving statistics (the backbone's pretraining data) are from the
    statistics of what it receives on the training images: medians over layers."""
    import numpy as np

    from edgekit.stages.tfmot_wrappers import batchnorm_input_statistics

    shifts, ratios = [], []
    for layer, (mean, variance) in zip(norms, batchnorm_input_statistics(model, images)):
        moving_std = np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
        shifts.append(float(np.median(np.abs(mean - layer.moving_mean.numpy()) / moving_std)))
        ratios.append(float(np.median(np.sqrt(variance + layer.epsilon) / moving_std)))
    return {"layers": len(norms), "median_mean_shift_in_moving_stds": round(float(np.median(shifts)), 3),
            "median_std_ratio_data_over_moving": round(float(np.median(ratios)), 3),
            "first_layer_mean_shift": round(shifts[0], 3), "first_layer_std_ratio": round(ratios[0], 3)}


def _preprocessing_check(images) -> dict:
    """Finding (a): do the batches BatchNormalization is re-estimated on equal what the parent's inference
    path feeds it (``edgekit.data.normalize``), unshuffled for the comparison, with no augmentation?"""
    import numpy as np

    from edgekit.data import normalize

    batch, _ = next(iter(images.dataset(seed=0, batch_size=len(images.labels))))
    batch = np.asarray(batch)
    reference = normalize(images.pixels, images.preprocessing)
    # the dataset shuffles: match each of its images to the reference by content
    index = {reference[i].tobytes(): i for i in range(len(reference))}
    matched = [index.get(image.tobytes()) for image in batch]
    return {"images": int(len(batch)), "identical_to_inference_normalisation": int(sum(m is not None for m in matched)),
            "pixel_range": [round(float(batch.min()), 3), round(float(batch.max()), 3)]}


def measure(float_dir: Path | None) -> dict:
    import numpy as np

    from edgekit._tf import import_tf
    from edgekit.artifacts import load_artifact
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder
    from edgekit.keras_io import load_float_model
    from edgekit.stages.prune import is_pointwise_conv
    from edgekit.stages.tfmot_wrappers import (batchnorm_input_statistics, conform_batchnorm, load_training_images,
                                               reestimate_batchnorm)

    _, tf_keras = import_tf()
    env = harness.environment()
    parent = load_artifact(float_dir) if float_dir else clothing_float(224)
    preprocessing, labels = parent.manifest.preprocessing_spec(), parent.manifest.labels
    test_pixels, truth = load_folder_arrays(scan_image_folder(CLOTHING / "test", classes=labels), preprocessing)
    test = normalize(test_pixels, preprocessing)
    train = load_training_images(CLOTHING / "train", labels, preprocessing)
    sample = np.random.default_rng(0).permutation(len(train.labels))[:REESTIMATION_IMAGES]
    train = replace(train, pixels=train.pixels[sample], labels=train.labels[sample])
    model = load_float_model(parent.path)
    dense_weights = [w.copy() for w in model.get_weights()]
    pointwise = [layer for layer in model.layers if is_pointwise_conv(layer)]
    norms = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    started = time.perf_counter()
    result: dict = {"preprocessing": _preprocessing_check(train), "statistics_gap": _gap(model, train, norms)}
    top1s: dict = {}

    def score(name: str) -> None:
        top1s[name] = round(float(np.mean(np.argmax(model.predict(test, batch_size=64, verbose=0), 1) == truth)), 4)
        print(f"{name}: {top1s[name]} ({time.perf_counter() - started:.0f} s)", flush=True)

    def prune(level: float) -> None:
        for layer in pointwise:
            kernel = layer.kernel.numpy()
            layer.kernel.assign(np.where(np.abs(kernel) <= np.quantile(np.abs(kernel), level), 0.0, kernel))

    def exact_statistics() -> None:
        for layer, (mean, variance) in zip(norms, batchnorm_input_statistics(model, train)):
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign(variance.astype(np.float32))

    score("dense")
    reestimate_batchnorm(model, train, seed=0)
    score("dense, re-estimated (running mean of 32-image batch statistics, training mode)")
    model.set_weights(dense_weights)
    reestimate_batchnorm(model, train, seed=0, batch_size=128)
    score("dense, re-estimated with 128-image batches")
    model.set_weights(dense_weights)
    exact_statistics()
    score("dense, moving statistics := the training images' exact statistics (inference pass, no compensation)")
    model.set_weights(dense_weights)
    result["conformed_layers"] = conform_batchnorm(model, train)
    score("dense, conformed (function kept)")
    reestimate_batchnorm(model, train, seed=0)
    score("dense, conformed, then re-estimated")
    for level in LEVELS:
        model.set_weights(dense_weights)
        prune(level)
        score(f"1x1 pruned {level:.0%}, no re-estimation")
        reestimate_batchnorm(model, train, seed=0)
        score(f"1x1 pruned {level:.0%}, re-estimated")
        model.set_weights(dense_weights)
        conform_batchnorm(model, train)
        prune(level)
        score(f"1x1 pruned {level:.0%} after conforming, no re-estimation")
        reestimate_batchnorm(model, train, seed=0)
        score(f"1x1 pruned {level:.0%} after conforming, re-estimated")
    return result | {
        "what": "top-1 of the clothing-small MobileNetV2 224 parent (head-only finetune: ImageNet BatchNormalization "
                "statistics) and of one-shot magnitude pruning of its 1x1 convolutions (no fine-tune), with "
                "BatchNormalization statistics kept, re-estimated, or conformed to the training images first "
                "(edgekit.stages.tfmot_wrappers.conform_batchnorm)",
        "float_parent": harness.relative(parent.path), "test_images": int(len(truth)),
        "reestimation_images": int(len(train.labels)), "top1": top1s,
        "elapsed_s": round(time.perf_counter() - started, 1), "environment": harness.finish(env)}


def markdown(result: dict) -> list[str]:
    lines = ["# Why re-estimating BatchNormalization cost the unpruned model 18 points (issue 19)", "", f"{result['what']}; "
             f"{result['test_images']} test photos; re-estimation on {result['reestimation_images']} training photos.",
             "", "| model | top-1 |", "|---|---:|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in result["top1"].items()]
    check, gap = result["preprocessing"], result["statistics_gap"]
    lines += ["", f"Finding (a): {check['identical_to_inference_normalisation']} of {check['images']} re-estimation "
              f"inputs are bit-identical to the parent's inference normalisation (edgekit.data.normalize; range "
              f"{check['pixel_range']}), no augmentation.",
              f"Moving statistics vs the training images' ({gap['layers']} BatchNormalization layers, medians): "
              f"mean shifted by {gap['median_mean_shift_in_moving_stds']} moving standard deviations, standard "
              f"deviation ratio data/moving {gap['median_std_ratio_data_over_moving']} (first layer: "
              f"{gap['first_layer_mean_shift']}, {gap['first_layer_std_ratio']}); {result['conformed_layers']} layers "
              "conformed.",
              "The exact-statistics row sets every layer at once from one pass through the parent, so each layer's "
              "statistics describe its input under the old upstream normalisation and no longer match once the "
              "layers above change: the moving statistics cannot simply be replaced; conforming keeps the function."]
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
