"""Finetune benchmark on clothing-small: test accuracy and wall time per backbone, and the per-epoch cost
of head training on cached features vs a naive frozen-backbone ``fit`` over the same images (one run).

Usage: python benchmarks/finetune_clothing.py [--size 160]
Writes benchmarks/results/finetune_clothing.{json,md} (benchmarks/harness.py: environment, load, atomic).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("EDGEKIT_QUIET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLOTHING as DATA  # noqa: E402
from harness import environment, environment_lines, finish, write_results  # noqa: E402


def naive_epoch_seconds(artifact, train_dir: Path) -> float:
    """One epoch of ``model.fit`` with the backbone frozen: every step runs the whole backbone forward."""
    from edgekit._tf import import_tf
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder
    from edgekit.keras_io import load_keras_model

    _, tf_keras = import_tf()
    model = load_keras_model(artifact.path)
    for layer in model.layers[:-1]:
        layer.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    preprocessing = artifact.manifest.preprocessing_spec()
    pixels, labels = load_folder_arrays(scan_image_folder(train_dir), preprocessing)
    x = normalize(pixels[:800], preprocessing)
    model.fit(x[:64], labels[:64], batch_size=32, epochs=1, verbose=0)  # build/trace outside the timing
    start = time.perf_counter()
    model.fit(x, labels[:800], batch_size=32, epochs=1, verbose=0)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--backbones", default="mobilenet_v2,efficientnet_lite0")
    args = parser.parse_args()
    if not (DATA / "train").is_dir():
        print(f"skipped: {DATA} not found (set EDGEKIT_SHARED)", file=sys.stderr)
        return 0
    from edgekit.evaluation import evaluate
    from edgekit.stages.finetune import FinetuneConfig, finetune

    rows = []
    setting = environment()
    with tempfile.TemporaryDirectory() as scratch:
        for backbone in args.backbones.split(","):
            start = time.perf_counter()
            result = finetune(data=DATA / "train", out_dir=Path(scratch) / backbone,
                              config=FinetuneConfig(backbone=backbone, input_size=args.size, epochs=40, seed=0))
            train_s = time.perf_counter() - start
            test = evaluate(model=result.artifact.path, data=DATA / "test")
            cached_epoch = result.timings["head_training_s"] / result.timings["head_epochs"]
            naive_epoch = naive_epoch_seconds(result.artifact, DATA / "train")
            rows.append({"backbone": backbone, "input_size": args.size, "test_accuracy": test["accuracy"],
                         "test_top5": test.get("top5_accuracy"), "validation_accuracy": result.metrics["accuracy"],
                         "finetune_wall_s": round(train_s, 1), "timings_s": result.timings,
                         "cached_head_epoch_s": round(cached_epoch, 4), "naive_frozen_fit_epoch_s": round(naive_epoch, 3),
                         "speedup": round(naive_epoch / cached_epoch, 1)})
            print(json.dumps(rows[-1]), flush=True)
    setting = finish(setting)
    lines = [f"# finetune on clothing-small ({args.size} px; train 1000 -> 800 train / 200 val, test 372)", "",
             "| backbone | test top-1 | test top-5 | val top-1 | finetune wall s | head epoch (cached) s | "
             "naive frozen fit epoch s | speed-up |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['backbone']} | {r['test_accuracy']:.3f} | {r['test_top5']:.3f} | {r['validation_accuracy']:.3f} | "
              f"{r['finetune_wall_s']} | {r['cached_head_epoch_s']} | {r['naive_frozen_fit_epoch_s']} | {r['speedup']}x |"
              for r in rows]
    lines += ["", "Goal: cached-feature head epochs >= 5x faster than a naive frozen fit (one run each).",
              *environment_lines(setting)]
    write_results("finetune_clothing", {"benchmark": "finetune_clothing", "environment": setting, "rows": rows}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
