"""Where an int8 model's loss comes from (weight rounding vs activation quantization), and whether other
activation range estimators than the calibration min/max recover it (issue 13).

Same float parents as benchmarks/int8_accuracy.py (--work, finetuned at defaults on clothing-small train/), same
2,440-photo pool (test/ + extra/, never used in training or calibration), same 200 class-stratified train/
calibration images (seed 0). Every variant is scored against its parent on the whole pool with
edgekit.metrics.accuracy_change (positive drop = loss, paired 95% interval, top-1 agreement):

- int8: the plain conversion (calibration min/max ranges);
- weights only: the float Keras model with every conv/depthwise/dense kernel replaced by the plain int8 model's
  own int8 kernel, dequantized (per-channel symmetric on the BatchNorm-folded kernel, exactly what the converter
  wrote), the BatchNorm scale divided back out; activations and biases stay float. The activation share is then
  estimated as int8 minus weights only (the two interact, so it is an estimate);
- int8 with activation ranges by percentile (99.99, 99.999) or by the per-tensor MSE-optimal clip
  (edgekit.targets.activation_ranges), edited into the calibrated model before quantization;
- AdaRound: the kernels rounded per weight to reconstruct each layer's output (edgekit.stages.weight_rounding),
  scored weights only (float activations) and as int8 with percentile 99.99 ranges.

Writes benchmarks/results/int8_loss_sources.{json,md}; each variant's result is cached under
--work/<backbone>-<size>/loss-sources/ so an interrupted run resumes.

    python benchmarks/int8_loss_sources.py --backbone mobilenet_v2 --size 224
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_accuracy import DATA, REPO, linked_pool  # noqa: E402
from int8_recovery import Tools, _cached  # noqa: E402

ESTIMATES = {  # row -> (activation range estimator, percentile)
    "int8, percentile 99.9 ranges": ("percentile", 99.9),
    "int8, percentile 99.99 ranges": ("percentile", 99.99),
    "int8, percentile 99.999 ranges": ("percentile", 99.999),
    "int8, MSE-optimal clip ranges": ("mse", 99.99),
}
PLAIN, WEIGHTS = "int8 (calibration min/max ranges, plain)", "weights only (int8 kernels, float activations)"
ADAROUND = {"weights_only": "weights only, AdaRound rounding (float activations)",
            "int8": "int8, AdaRound rounding, percentile 99.99 ranges"}


def weights_only(model, int8_bytes: bytes) -> tuple[object, dict]:
    """``model`` (changed in place) with each kernel replaced by the int8 model's dequantized one, BatchNorm
    scale divided back out; and a record: layers replaced, and the largest distance between the float folded
    kernel and the int8 one in the converter's int8 steps (<= 0.5 when the int8 kernel is its rounding of it;
    the converter widens a channel's step where its int32 bias would overflow, so not every step is max/127)."""
    from edgekit.stages.weight_rounding import converter_grids

    grids = converter_grids(model, int8_bytes)
    worst_steps = max(float(np.max(np.abs(grid.folded / grid.step - grid.integers))) for grid in grids)
    for grid in grids:
        grid.write(grid.integers)
    return model, {"layers_replaced": len(grids), "largest_error_in_int8_steps": round(worst_steps, 3)}


def keras_score(tools: Tools, model) -> dict:
    """Drop of a Keras model against the parent on the pool (as Workbench.score does for .tflite bytes)."""
    from edgekit.metrics import accuracy_change

    bench = tools.bench
    outputs = np.asarray(model.predict(bench.pool_inputs, batch_size=32, verbose=0))
    change = accuracy_change(bench.truth, bench.reference, outputs, bench.labels)
    return {key: change[key] for key in ("images", "parent_top1", "top1", "drop_points", "interval95_points",
                                         "upper95_points", "top1_agreement", "only_parent_right",
                                         "only_model_right")}


def measure(tools: Tools, cache: Path, cached_only: bool) -> dict:
    """Every row for one parent; None where not measured (only the cache may be read)."""
    from edgekit.keras_io import load_float_model

    def plain() -> dict:
        return tools.score(tools.prepared.convert("int8"))

    def weights() -> dict:
        model, record = weights_only(load_float_model(tools.bench.parent.path), tools.prepared.convert("int8"))
        return keras_score(tools, model) | record

    def estimated(estimator: str, percentile: float):
        def run() -> dict:
            from edgekit.targets.tflite_converter import PreparedModel

            with PreparedModel(tools.bench.model, what=str(tools.root), representative=tools.prepared.representative,
                               activation_ranges=estimator, percentile=percentile) as prepared:
                data = prepared.convert("int8")
                return tools.score(data) | {"activation_ranges": prepared.range_reports[-1]}
        return run

    def rounded() -> dict:
        from edgekit.stages.weight_rounding import adaround, converter_grids, grid_mismatches
        from edgekit.targets.tflite_converter import PreparedModel

        model = load_float_model(tools.bench.parent.path)
        grids = converter_grids(model, tools.prepared.convert("int8"))
        report = adaround(model, grids, tools.prepared.representative)
        with PreparedModel(model, what=str(tools.root), representative=tools.prepared.representative,
                           activation_ranges="percentile") as prepared:
            data = prepared.convert("int8")
        return {"weights_only": keras_score(tools, model), "int8": tools.score(data),
                "converter_vs_chosen": grid_mismatches(model, grids, data),
                "adaround": {key: value for key, value in report.items() if key != "per_layer"},
                "adaround_per_layer": report["per_layer"]}

    rows = {PLAIN: _cached(cache / "plain.json", plain, cached_only),
            WEIGHTS: _cached(cache / "weights-only.json", weights, cached_only)}
    for name, (estimator, percentile) in ESTIMATES.items():
        slug = f"{estimator}-{percentile:g}" if estimator == "percentile" else estimator
        rows[name] = _cached(cache / f"ranges-{slug}.json", estimated(estimator, percentile), cached_only)
    found = _cached(cache / "adaround.json", rounded, cached_only)
    for key, name in ADAROUND.items():
        rows[name] = found and found[key] | {"adaround": found["adaround"],
                                             "converter_vs_chosen": found["converter_vs_chosen"]}
    return rows


def _interval(row: dict) -> str:
    low, high = row["interval95_points"]
    return f"{row['drop_points']:+.2f} ({low:+.2f} to {high:+.2f})"


def markdown(results: dict) -> str:
    lines = ["# Where the int8 loss comes from, and activation range estimators", "",
             "Float parents of benchmarks/results/int8_accuracy.md (this Intel Xeon's fine-tunes, sha256 below), "
             "scored on the 2,440-photo pool (clothing-small test/ + extra/, never used in training or "
             "calibration) against the parent: drop in top-1 points (positive = loss) with the paired 95% "
             "interval, top-1 agreement. 200 train/ calibration images (seed 0) for every variant. "
             "*Weights only*: the float model with each conv/depthwise/dense kernel replaced by the plain int8 "
             "model's own int8 kernel (per-channel, BatchNorm folded), activations float. *Activations "
             "(estimate)*: plain int8 minus weights only. Range rows: the calibrated model's activation ranges "
             "replaced before quantization (`edgekit.targets.activation_ranges`; inputs and softmax logits kept). "
             "*AdaRound* rows: every kernel's rounding chosen per weight to reconstruct each layer's output "
             "(`edgekit.stages.weight_rounding`, 64 of the calibration images, layers in order) and written back on "
             "the converter's own grid; weights only scores that float model, int8 converts it (converter vs "
             "chosen integers in the JSON).",
             "", "| parent | variant | n | drop (95% CI) | agreement | size vs fp32 TFLite | tensors narrowed (median "
                 "width kept) |",
             "|---|---|---:|---|---:|---:|---|"]
    for key, entry in results["parents"].items():
        rows = entry["rows"]
        for name, row in rows.items():
            if row is None:
                continue
            ranges = row.get("activation_ranges")
            narrowed = (f"{ranges['narrowed']}/{ranges['tensors']} ({ranges['median_width_share']:.2f})"
                        if ranges else "-")
            size = f"{row['size_vs_float32_tflite']:.3f}x" if "size_vs_float32_tflite" in row else "- (float)"
            lines.append(f"| {key} | {name} | {row['images']} | {_interval(row)} | {row['top1_agreement']:.3f} | "
                         f"{size} | {narrowed} |")
        if rows.get(PLAIN) and rows.get(WEIGHTS):
            share = rows[PLAIN]["drop_points"] - rows[WEIGHTS]["drop_points"]
            lines.append(f"| {key} | activations (estimate: int8 minus weights only) | - | {share:+.2f} | - | - | - |")
    lines += ["", "Parents: " + ", ".join(f"{key} {entry['parent_sha256'][:12]}"
                                         for key, entry in results["parents"].items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-int8-accuracy")
    parser.add_argument("--backbone", action="append", help="catalog name (repeatable; default mobilenet_v2)")
    parser.add_argument("--size", type=int, action="append", help="input size (repeatable; default 224)")
    parser.add_argument("--cached-only", action="store_true", help="measure nothing; write the results")
    args = parser.parse_args()
    from edgekit.artifacts import load_artifact, write_json_atomic, write_text_atomic
    from edgekit.machine import machine_record

    pool = linked_pool(args.work / "pool", [args.data / "test", args.data / "extra"])
    parents = {}
    for root in sorted(args.work.glob("*-*/float/manifest.json")):
        root = root.parent.parent
        key = root.name
        backbone, size = key.rsplit("-", 1)
        chosen = (backbone in (args.backbone or ["mobilenet_v2"])) and int(size) in (args.size or [224])
        if not (root / "loss-sources").is_dir() and not chosen:
            continue
        with ExitStack() as stack:
            tools = Tools(root, args.data, pool, stack)
            rows = measure(tools, root / "loss-sources", args.cached_only or not chosen)
        parents[key] = {"parent_sha256": load_artifact(root / "float").manifest.sha256, "rows": rows}
    results = {"pool": "clothing-small test/ + extra/", "calibration_images": 200, "parents": parents,
               "machine": machine_record() | {"note": "shared with other engineers; load per row"}}
    out = REPO / "benchmarks" / "results"
    write_json_atomic(out / "int8_loss_sources.json", results)
    write_text_atomic(out / "int8_loss_sources.md", markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
