"""ONNX fp32 vs ONNX int8 (static QDQ) vs TFLite int8 on clothing-small, from one finetuned MobileNetV2.

Measures file size, single-thread median latency, top-1 on the test split and top-1 agreement with
the float Keras parent. Writes benchmarks/results/onnx_vs_tflite.{json,md}. Goal: ONNX int8 >= 1.6x
faster than ONNX fp32 with <= 1.0 point top-1 drop.

    python benchmarks/onnx_vs_tflite.py                       # finetunes the float parent first
    python benchmarks/onnx_vs_tflite.py --float runs/x/float --tflite-int8 runs/x/int8/model.tflite
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared")) / "datasets" / "clothing-small"


def onnx_latency_ms(path: Path, sample: np.ndarray, runs: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: sample[None]}
    for _ in range(5):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float", dest="float_dir", type=Path, help="finetuned float artifact folder (default: finetune one)")
    parser.add_argument("--tflite-int8", type=Path, help="int8 .tflite of the same parent (default: convert one)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-onnx")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per model")
    parser.add_argument("--calibration-samples", type=int, default=200)
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        print(f"skipped: {args.data} not found", file=sys.stderr)
        return 0

    from _common import float_parent_and_test_inputs  # benchmarks/ is on sys.path when run as a script
    from edgekit.artifacts import write_json_atomic, write_text_atomic
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder
    from edgekit.metrics import agreement
    from edgekit.targets.onnx import export_onnx, run_onnx_subprocess
    from edgekit.runtime.backends import median_latency_ms
    from edgekit.stages.convert_tflite import convert_keras_to_tflite, run_tflite

    parent, inputs, labels = float_parent_and_test_inputs(args.float_dir, work=args.work, data=args.data)
    preprocessing = parent.manifest.preprocessing_spec()

    from edgekit.keras_io import load_keras_model

    keras_model = load_keras_model(parent.path)
    reference = np.asarray(keras_model.predict(inputs, batch_size=32, verbose=0))
    calibration = args.data / "train"
    fp32 = export_onnx(parent.directory, out_dir=args.work / "onnx-fp32")
    int8 = export_onnx(parent.directory, out_dir=args.work / "onnx-int8", int8=True, calibration=calibration,
                       calibration_samples=args.calibration_samples)
    tflite_path = args.tflite_int8
    if tflite_path is None:
        from edgekit.data import calibration_sample

        chosen = calibration_sample(scan_image_folder(calibration), args.calibration_samples, seed=0)
        representative = normalize(load_folder_arrays(chosen, preprocessing)[0], preprocessing)
        tflite_path = args.work / "tflite-int8" / "model.tflite"
        convert_keras_to_tflite(keras_model, out_path=tflite_path, mode="int8", representative=representative,
                                io_dtype="int8")
    tflite_bytes = Path(tflite_path).read_bytes()

    rows = {}
    float_top1 = float((reference.argmax(1) == labels).mean())
    rows["keras fp32 (parent)"] = {"size_bytes": parent.manifest.size_bytes, "top1": float_top1}
    for name, path in (("onnx fp32", fp32.path), ("onnx int8 (QDQ)", int8.path)):
        outputs = run_onnx_subprocess(path, inputs)
        rows[name] = {"size_bytes": path.stat().st_size, "latency_ms": onnx_latency_ms(path, inputs[0], args.runs),
                      "top1": float((outputs.argmax(1) == labels).mean()),
                      "agreement_with_float": agreement(reference, outputs)["top1_agreement"]}
    outputs = run_tflite(tflite_bytes, inputs)
    rows["tflite int8"] = {"size_bytes": len(tflite_bytes), "latency_ms": median_latency_ms(tflite_bytes, runs=args.runs),
                           "top1": float((outputs.argmax(1) == labels).mean()),
                           "agreement_with_float": agreement(reference, outputs)["top1_agreement"]}
    speedup = rows["onnx fp32"]["latency_ms"] / rows["onnx int8 (QDQ)"]["latency_ms"]
    drop = (rows["onnx fp32"]["top1"] - rows["onnx int8 (QDQ)"]["top1"]) * 100
    result = {"backbone": parent.manifest.backbone, "input_size": list(preprocessing.size), "test_images": len(labels),
              "threads": 1, "runs": args.runs, "models": rows,
              "onnx_int8_speedup_vs_fp32": speedup, "onnx_int8_top1_drop_points": drop,
              "goal_met": speedup >= 1.6 and drop <= 1.0,
              "machine": {"cpus": os.cpu_count(), "note": "2 cores shared with other work; latencies are medians"}}
    out = REPO / "benchmarks" / "results"
    write_json_atomic(out / "onnx_vs_tflite.json", result)
    lines = [f"# ONNX fp32 vs ONNX int8 (QDQ) vs TFLite int8: {parent.manifest.backbone} "
             f"{preprocessing.size[0]}px, clothing-small test ({len(labels)} images), 1 thread", "",
             "| model | size (KiB) | median latency (ms) | top-1 | top-1 agreement with float |",
             "|---|---:|---:|---:|---:|"]
    for name, row in rows.items():
        latency = f"{row['latency_ms']:.2f}" if "latency_ms" in row else "-"
        agree = f"{row['agreement_with_float']:.3f}" if "agreement_with_float" in row else "-"
        lines.append(f"| {name} | {row['size_bytes'] / 1024:.0f} | {latency} | {row['top1']:.3f} | {agree} |")
    lines += ["", f"ONNX int8 speedup vs fp32: {speedup:.2f}x; top-1 drop {drop:+.2f} points (+ = loss); "
              f"goal (>= 1.6x, <= 1.0 point) {'met' if result['goal_met'] else 'NOT met'}."]
    write_text_atomic(out / "onnx_vs_tflite.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
