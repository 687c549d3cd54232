"""Every compress variant of one finetuned MobileNetV2 (160 px) on clothing-small, against float32 TFLite.

Table: variant | size vs float | gzip size vs float | latency vs float (1 thread, ai_edge_litert, median
of N runs) | top-1 drop (points, on the test split). Writes benchmarks/results/compress_variants.{json,md}.
Goals: int8 size <= 0.28x float, int8 >= 1.6x faster, int8 top-1 drop <= 1.0 point, pruned-50% + int8
gzip <= 0.20x float.

    python benchmarks/compress_variants.py [--float runs/x/float] [--runs 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared")) / "datasets" / "clothing-small"

VARIANTS = {  # name -> compress() options
    "float16": {"float16": True},
    "dynamic": {"dynamic": True},
    "int8": {"int8": True},
    "prune 50% + int8": {"prune": 0.5, "int8": True},
    "cluster 16 + int8": {"cluster": 16, "int8": True},
    "QAT int8": {"qat": True},
    "accuracy-guarded int8 (<= 1.0 pt)": {"int8": True, "max_accuracy_drop": 1.0},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float", dest="float_dir", type=Path, help="finetuned float artifact (default: finetune one)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-compress")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--runs", type=int, default=100, help="timed runs per model")
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        print(f"skipped: {args.data} not found", file=sys.stderr)
        return 0

    from _common import float_parent_and_test_inputs  # benchmarks/ is on sys.path when run as a script
    from edgekit.artifacts import write_json_atomic, write_text_atomic
    from edgekit.keras_io import load_keras_model
    from edgekit.stages.compress import compress
    from edgekit.runtime.backends import median_latency_ms
    from edgekit.stages.convert_tflite import convert_keras_to_tflite, gzip_size, run_tflite
    from edgekit.tables import DROP_HEADER

    parent, inputs, labels = float_parent_and_test_inputs(args.float_dir, work=args.work, data=args.data,
                                                          input_size=args.size)
    preprocessing = parent.manifest.preprocessing_spec()
    float_bytes = convert_keras_to_tflite(load_keras_model(parent.path), mode="float32", what="float parent")
    float_top1 = float((run_tflite(float_bytes, inputs).argmax(1) == labels).mean())
    float_ms = median_latency_ms(float_bytes, runs=args.runs)
    float_gzip = gzip_size(float_bytes)
    rows = {"float32": {"size_bytes": len(float_bytes), "gzip_bytes": float_gzip, "latency_ms": float_ms,
                        "top1": float_top1, "size_vs_float": 1.0, "gzip_vs_float": 1.0, "speedup_vs_float": 1.0,
                        "top1_drop_points": 0.0}}
    for name, options in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        slug = name.split(" (")[0].replace(" ", "-").replace("%", "").replace("+", "")
        (artifact,) = compress(model=parent.directory, out_dir=args.work / slug, eval_data=args.data / "test",
                               fine_tune_epochs=args.fine_tune_epochs, seed=0, **options)
        data = artifact.path.read_bytes()
        top1 = float((run_tflite(data, inputs).argmax(1) == labels).mean())
        latency = median_latency_ms(data, runs=args.runs)
        rows[name] = {"size_bytes": len(data), "gzip_bytes": gzip_size(data), "latency_ms": latency, "top1": top1,
                      "size_vs_float": len(data) / len(float_bytes), "gzip_vs_float": gzip_size(data) / float_gzip,
                      "speedup_vs_float": float_ms / latency, "top1_drop_points": (float_top1 - top1) * 100,
                      "agreement_with_float": artifact.manifest.metrics["validation"]["top1_agreement"],
                      "kept_float_layers": len(artifact.manifest.extra.get("accuracy_guard", {}).get(
                          "kept_float_layers", [])),
                      "wall_s": round(time.perf_counter() - started, 1)}
        print(f"{name}: {rows[name]}", flush=True)
    int8, pruned = rows.get("int8"), rows.get("prune 50% + int8")
    goals = {}
    if int8:
        goals |= {"int8_size_le_0.28x": int8["size_vs_float"] <= 0.28, "int8_speedup_ge_1.6x": int8["speedup_vs_float"] >= 1.6,
                  "int8_top1_drop_le_1.0": int8["top1_drop_points"] <= 1.0}
    if pruned:
        goals["pruned50_int8_gzip_le_0.20x"] = pruned["gzip_vs_float"] <= 0.20
    result = {"backbone": parent.manifest.backbone, "input_size": list(preprocessing.size), "test_images": len(labels),
              "threads": 1, "runs": args.runs, "fine_tune_epochs": args.fine_tune_epochs, "variants": rows,
              "goals": goals, "machine": {"cpus": os.cpu_count(), "note": "2 cores shared with other work"}}
    out = REPO / "benchmarks" / "results"
    write_json_atomic(out / "compress_variants.json", result)
    lines = [f"# compress variants: {parent.manifest.backbone} {preprocessing.size[0]}px, clothing-small test "
             f"({len(labels)} images), vs float32 TFLite ({len(float_bytes) / 1024:.0f} KiB, {float_ms:.2f} ms, "
             f"top-1 {float_top1:.3f}); 1 thread, median of {args.runs}", "",
             f"| variant | size vs float | gzip size vs float | latency vs float | top-1 {DROP_HEADER} |",
             "|---|---:|---:|---:|---:|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['size_vs_float']:.3f}x | {row['gzip_vs_float']:.3f}x | "
                     f"{row['speedup_vs_float']:.2f}x faster | {row['top1_drop_points']:+.2f} |")
    lines += ["", "Goals: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in goals.items())]
    write_text_atomic(out / "compress_variants.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
