"""ONNX fp32 vs ONNX int8 (static QDQ) vs TFLite float32 and int8, from one MobileNetV2 (224 px) finetuned
on clothing-small (the small head-only finetune of benchmarks/_common.py, shared with the other benchmarks).

Size; latency (1 thread, edgekit's profiler runner on onnxruntime / LiteRT, fresh pinned process per
measurement, interleaved rounds, ratios round by round: benchmarks/harness.py; speed-ups on the inference
thread's CPU time, which other people's load does not inflate, wall time beside it); top-1 on the test split
and the drop against the float Keras parent (positive = loss, 95% interval for paired answers).
Goal: ONNX int8 >= 1.6x faster than ONNX fp32 with <= 1.0 point top-1 drop.
Writes benchmarks/results/onnx_vs_tflite.{json,md}.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (CLOTHING, SMALL_FINETUNE, WORK, clothing_float, clothing_tflite_pair,  # noqa: E402
                     float_parent_and_test_inputs)
from harness import (accuracy_drop, cell, environment, environment_lines, finish, interleaved, pinned_cores,  # noqa: E402
                     runner_latency, speedups, summarize, write_results)

SIZE, RUNS, WARMUP, CALIBRATION_SAMPLES = 224, 100, 10, 200
SPEEDUP_GOAL, DROP_GOAL = 1.6, 1.0


def build_models(parent, work: Path) -> dict[str, Path]:
    """ONNX fp32 + int8 (QDQ) of ``parent`` (built once; reruns reuse them) and the TFLite pair of the same parent."""
    from edgekit.api import export

    if not (work / "onnx-fp32" / "manifest.json").is_file():
        export(model=parent.directory, target="onnx", out_dir=work / "onnx-fp32")
    if not (work / "onnx-int8" / "manifest.json").is_file():
        export(model=parent.directory, target="onnx", out_dir=work / "onnx-int8", int8=True,
               calibration=CLOTHING / "train", calibration_samples=CALIBRATION_SAMPLES)
    tflite = clothing_tflite_pair(SIZE)
    return {"onnx fp32": work / "onnx-fp32" / "model.onnx", "onnx int8 (QDQ)": work / "onnx-int8" / "model.onnx",
            "tflite float32": tflite["float32"], "tflite int8": tflite["int8"]}


def main() -> int:
    if not (CLOTHING / "train").is_dir():
        print(f"skipped: {CLOTHING} not found (set EDGEKIT_SHARED)", file=sys.stderr)
        return 0
    from edgekit.keras_io import load_keras_model
    from edgekit.targets.onnx import run_onnx_subprocess
    from edgekit.tables import DROP_HEADER
    from edgekit.targets.tflite_converter import run_tflite

    parent, inputs, labels = float_parent_and_test_inputs(clothing_float(SIZE, **SMALL_FINETUNE).directory)
    models = build_models(parent, WORK / f"onnx-{SIZE}")
    reference = np.asarray(load_keras_model(parent.path).predict(inputs, batch_size=32, verbose=0)).argmax(1)
    top1 = {name: (run_onnx_subprocess(path, inputs) if path.suffix == ".onnx"
                   else run_tflite(path.read_bytes(), inputs)).argmax(1) for name, path in models.items()}
    cores = pinned_cores(1)
    setting = environment(cores=cores, rounds=7)
    samples = interleaved({name: (lambda p=path: runner_latency(p, runs=RUNS, warmup=WARMUP))
                           for name, path in models.items()})
    setting = finish(setting)
    latency, cpu = summarize(samples, "p50_ms"), summarize(samples, "cpu_p50_ms")
    vs_onnx = speedups(samples, "cpu_p50_ms", "onnx fp32")
    vs_tflite = speedups(samples, "cpu_p50_ms", "tflite float32")
    wall_vs_onnx = speedups(samples, "p50_ms", "onnx fp32")
    rows = {"keras fp32 (parent)": {"size_bytes": parent.manifest.size_bytes,
                                    "top1": float((reference == labels).mean())}}
    for name, path in models.items():
        rows[name] = {"size_bytes": path.stat().st_size, "p50_ms": latency[name], "cpu_p50_ms": cpu[name],
                      "top1": float((top1[name] == labels).mean()),
                      "top1_drop_vs_keras": accuracy_drop(labels, reference, top1[name]),
                      "agreement_with_keras": float((top1[name] == reference).mean())}
    speedup, drop = vs_onnx["onnx int8 (QDQ)"], rows["onnx int8 (QDQ)"]["top1_drop_vs_keras"]
    goals = {f"onnx int8 >= {SPEEDUP_GOAL}x faster than onnx fp32": speedup["median"] >= SPEEDUP_GOAL,
             f"onnx int8 top-1 drop <= {DROP_GOAL} point": drop["drop_points"] <= DROP_GOAL}
    payload = {"benchmark": "onnx_vs_tflite", "environment": setting, "backbone": parent.manifest.backbone,
               "input_size": SIZE, "test_images": len(labels), "threads": 1, "runs": RUNS, "warmup": WARMUP,
               "models": rows, "onnx_int8_speedup_vs_fp32": speedup,
               "onnx_int8_wall_speedup_vs_fp32": wall_vs_onnx["onnx int8 (QDQ)"],
               "tflite_int8_speedup_vs_float32": vs_tflite["tflite int8"], "goals": goals}
    lines = [f"# ONNX vs TFLite: {parent.manifest.backbone} {SIZE} px finetuned on clothing-small, "
             f"{len(labels)} test images, 1 thread", "",
             f"Latency: p50 of {RUNS} runs per fresh pinned process, {setting['rounds']} interleaved rounds, medians "
             "[min-max]; speed-ups taken round by round against the same format's float model. Top-1 drop "
             "against the Keras parent: positive = loss, 95% interval for paired answers.", "",
             f"| model | size KiB | p50 ms wall / CPU | CPU speed-up vs same-format float | top-1 | {DROP_HEADER} [95% CI] "
             "| agreement |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in rows.items():
        if "p50_ms" not in row:
            lines.append(f"| {name} | {row['size_bytes'] / 1024:.0f} | - | - | {row['top1']:.3f} | - | - |")
            continue
        ratio = (vs_onnx if models[name].suffix == ".onnx" else vs_tflite).get(name)  # None for the float baselines
        d = row["top1_drop_vs_keras"]
        lines.append(f"| {name} | {row['size_bytes'] / 1024:.0f} | {row['p50_ms']['median']:.2f} / "
                     f"{row['cpu_p50_ms']['median']:.2f} | "
                     f"{cell(ratio) if ratio else '1x'} | "
                     f"{row['top1']:.3f} | {d['drop_points']:+.2f} [{d['ci95_points'][0]:+.2f}, "
                     f"{d['ci95_points'][1]:+.2f}] | {row['agreement_with_keras']:.3f} |")
    lines += ["", f"ONNX int8 vs fp32 in wall time: {cell(wall_vs_onnx['onnx int8 (QDQ)'])}.",
              "Goals (speed-up on CPU time): " + "; ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in goals.items()) + ".",
              *environment_lines(setting)]
    write_results("onnx_vs_tflite", payload, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
