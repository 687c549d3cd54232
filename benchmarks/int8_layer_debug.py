"""Where a backbone's int8 loss comes from: TFLite's quantization debugger per layer, then one experiment per
suspect, each on its own, scored on clothing-small test/ + extra/ (never used in training).

Suspects (issue 13): the input quantization (the first conv kept float), the depthwise layers (all kept
float), the head / logits (the classifier kept float), the calibration (1,000 augmented-free train
images instead of 200), and the debugger's 8 worst layers. Each row: drop vs float with its paired 95%
interval, agreement and size vs the float32 TFLite. Needs a finetuned float artifact (e.g. the one
benchmarks/int8_accuracy.py leaves in runs/bench-int8-accuracy/<backbone>-<size>/float).

    python benchmarks/int8_layer_debug.py runs/bench-int8-accuracy/mobilenet_v2-224/float
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared")) / "datasets" / "clothing-small"


def _first_conv_output(model_bytes: bytes) -> list[str]:
    """Name of the output tensor of the model's first CONV_2D (the op that reads the quantized input)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    for op in interpreter._get_ops_details():
        if op["op_name"] == "CONV_2D":
            return [names[op["outputs"][0]]]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("float_dir", type=Path)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--pool", type=Path, default=REPO / "runs" / "bench-int8-accuracy" / "pool")
    args = parser.parse_args()

    from edgekit.artifacts import load_artifact, write_json_atomic, write_text_atomic
    from edgekit.data import calibration_sample, load_folder_arrays, normalize, scan_image_folder
    from edgekit.keras_io import load_keras_model
    from edgekit.metrics import accuracy_change
    from edgekit.targets.tflite import PreparedModel, run_tflite

    started = time.perf_counter()
    parent = load_artifact(args.float_dir)
    labels, pre = parent.manifest.labels, parent.manifest.preprocessing_spec()
    pool = scan_image_folder(args.pool, classes=labels)
    pixels, truth = load_folder_arrays(pool, pre)
    inputs = normalize(pixels, pre)
    train = scan_image_folder(args.data / "train", classes=labels)
    model = load_keras_model(parent.path)
    reference = np.asarray(model.predict(inputs, batch_size=32, verbose=0))

    def calibration(count: int) -> np.ndarray:
        return normalize(load_folder_arrays(calibration_sample(train, count, seed=0), pre)[0], pre)

    rows: dict[str, dict] = {}

    def score(name: str, data: bytes, float32_bytes: int) -> None:
        change = accuracy_change(truth, reference, run_tflite(data, inputs), labels)
        rows[name] = {key: change[key] for key in ("images", "drop_points", "interval95_points", "top1_agreement")}
        rows[name]["size_vs_float32_tflite"] = round(len(data) / float32_bytes, 4)
        print(name, json.dumps(rows[name]), flush=True)

    with PreparedModel(model, what=str(parent.path), representative=calibration(200)) as prepared:
        float32, plain = prepared.convert_many([("float32", "float32", ()), ("int8", "float32", ())])
        score("int8 (200 calibration images)", plain, len(float32))
        stats = prepared.layer_stats()  # worst first
        by_op: dict[str, list[float]] = defaultdict(list)
        for row in stats:
            by_op[row["op_name"]].append(row["rmse_over_scale"])
        order = [row["tensor_name"] for row in stats]
        depthwise = tuple(r["tensor_name"] for r in stats if r["op_name"] == "DEPTHWISE_CONV_2D")
        head = tuple(r["tensor_name"] for r in stats if r["op_name"] == "FULLY_CONNECTED")
        first_conv = tuple(name for name in _first_conv_output(float32) if name in order)
        experiments = {"first conv float (input quantization)": first_conv,
                       f"all {len(depthwise)} depthwise layers float": depthwise,
                       "classifier head float": head, "8 worst layers (debugger) float": tuple(order[:8])}
        jobs = [(n, deny) for n, deny in experiments.items() if deny]
        for (name, _), data in zip(jobs, prepared.convert_many([("int8", "float32", d) for _, d in jobs])):
            score(name, data, len(float32))
    with PreparedModel(model, what=str(parent.path), representative=calibration(1000)) as prepared:
        score("int8 (1,000 calibration images)", prepared.convert("int8"), len(float32))
    result = {"float": str(parent.path), "backbone": parent.manifest.backbone, "input_size": list(pre.size),
              "pool_images": len(truth), "experiments": rows,
              "debugger_rmse_over_scale_by_op": {op: {"layers": len(v), "mean": round(float(np.mean(v)), 4),
                                                      "max": round(float(np.max(v)), 4)} for op, v in by_op.items()},
              "worst_layers": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                               for r in stats[:10]],
              "wall_s": round(time.perf_counter() - started, 1),
              "load": " ".join(Path("/proc/loadavg").read_text().split()[:3])}
    name = f"int8_layer_debug_{parent.manifest.backbone}_{pre.size[0]}"
    out = REPO / "benchmarks" / "results"
    write_json_atomic(out / f"{name}.json", result)
    lines = [f"# {parent.manifest.backbone} {pre.size[0]} px: where the int8 loss comes from", "",
             f"{len(truth)} clothing-small test/ + extra/ photos; drop in points (positive = loss), paired 95% CI.",
             "", "| experiment | drop (95% CI) | agreement | size vs fp32 TFLite |", "|---|---|---:|---:|"]
    for exp, row in rows.items():
        low, high = row["interval95_points"]
        lines.append(f"| {exp} | {row['drop_points']:+.2f} ({low:+.2f} to {high:+.2f}) | "
                     f"{row['top1_agreement']:.3f} | {row['size_vs_float32_tflite']:.3f}x |")
    lines += ["", "Debugger RMSE/scale by op type (mean / max over layers):", ""]
    lines += [f"- {op}: {v['layers']} layers, {v['mean']} / {v['max']}"
              for op, v in result["debugger_rmse_over_scale_by_op"].items()]
    write_text_atomic(out / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
