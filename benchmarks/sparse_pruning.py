"""Does pruning buy latency? Dense float32, sparse float32, int8 and pruned + int8, side by side (issue 19).

MobileNetV2 224 px finetuned on clothing-small train/ (head only; or ``--float``). ``compress --prune 0.7
--prune-for latency --int8`` gives the sparse float32 model (1x1 convolutions pruned with tfmot's
PruneForLatencyOnXNNPack, stored sparse) and its int8 twin; ``compress --int8`` the plain int8 model.
Accuracy: every model against the float parent on test/ + extra/ (never used for fine-tuning), the
drop with its paired 95% interval (``edgekit.metrics.accuracy_change``, inside compress).

Latency: ONE interleaved run through ``benchmarks/harness.py`` (every model once per round, a fresh
process pinned to one core each time, warm-up round first), including the parent's 1x1 convolutions
magnitude-pruned to 50/80/90% and stored sparse (no fine-tune: latency does not depend on accuracy),
for latency against sparsity level. Also: which shipped backbones follow XNNPACK's sparse pattern
(tfmot's own check, on each backbone as finetune builds it).

    EDGEKIT_SHARED=/work/shared PYTHONPATH=$PWD .venv/bin/python benchmarks/sparse_pruning.py \
        [--float runs/sparse/float] [--work runs/bench-sparse] [--rounds 5]
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

from edgekit.options import LATENCY_PRUNE_FINE_TUNE_EPOCHS  # noqa: E402

SPARSITY = 0.7
CURVE_LEVELS = (0.5, 0.8, 0.9)
GOAL_SPEEDUP = 1.3
GOAL_DROP = 1.0


def distillation_method() -> str:
    """Latency pruning's distillation as a cache name: consistent, with the views' smallest crop."""
    from edgekit.stages.tfmot_wrappers import VIEWS

    return f"consistent-crop{VIEWS.crop:g}"


def seed_tag(seed: int) -> str:
    """A cache or result name's suffix for the pruning run's seed: none for seed 0, so its caches stay valid."""
    return f"-s{seed}" if seed else ""


def _variants(parent, work: Path, pool: Path, epochs: int, seed: int = 0) -> dict:
    """The compressed artifacts (compress runs cached in ``work``: an atomically written folder is reused);
    ``seed`` is the latency-pruning compress run's (int8 stays at seed 0: nothing here compares its seeds)."""
    from edgekit.artifacts import load_artifact
    from edgekit.stages.compress import compress

    def built(folder: Path, names: tuple[str, ...], seed: int = 0, **options) -> list:
        if all((folder / name / "manifest.json").is_file() for name in names):
            return [load_artifact(folder / name) for name in names]
        return compress(model=parent.path, out_dir=folder, eval_data=pool, seed=seed, **options)

    level = round(SPARSITY * 100)
    # the folder names the method, so a cache built with other distillation targets or views is not reused
    sparse32, sparse8 = built(work / f"sparse-{distillation_method()}-distill-e{epochs}{seed_tag(seed)}",
                              (f"sparse{level}-float32", f"sparse{level}-int8"), seed,
                              prune=SPARSITY, prune_for="latency", int8=True, fine_tune_epochs=epochs)
    (int8,) = built(work / "int8", ("int8",), int8=True)
    return {"sparse float32": sparse32, "int8": int8, "pruned + int8": sparse8}


def _dense(parent, work: Path) -> Path:
    """The parent as a dense float32 .tflite with metadata: compress's own baseline."""
    path = work / "dense-float32.tflite"
    if not path.is_file():
        from edgekit.keras_io import load_float_model
        from edgekit.targets.tflite_converter import convert_keras_to_tflite, embed_metadata

        data = convert_keras_to_tflite(load_float_model(parent.path), what="float parent")
        path.write_bytes(embed_metadata(data, labels=parent.manifest.labels,
                                        preprocessing=parent.manifest.preprocessing))
    return path


def _curve_models(parent, work: Path) -> dict[float, Path]:
    """The parent with its 1x1 convolutions magnitude-pruned to each level, stored sparse (latency only)."""
    import numpy as np

    from edgekit.keras_io import load_float_model
    from edgekit.stages.prune import is_pointwise_conv
    from edgekit.targets.tflite_converter import PreparedModel

    paths = {level: work / "curve" / f"sparse{round(level * 100)}.tflite" for level in CURVE_LEVELS}
    if all(path.is_file() for path in paths.values()):
        return paths
    model = load_float_model(parent.path)
    originals = {layer.name: layer.get_weights() for layer in model.layers if is_pointwise_conv(layer)}
    for level, path in paths.items():
        for layer in model.layers:
            if layer.name in originals:
                kernel, *rest = originals[layer.name]
                cut = np.quantile(np.abs(kernel), level)
                layer.set_weights([np.where(np.abs(kernel) <= cut, 0.0, kernel).astype(kernel.dtype), *rest])
        with PreparedModel(model, what=f"parent pruned to {level}") as prepared:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(prepared.convert("sparse_float32"))
    return paths


def _backbone_rules(cache: Path) -> list[dict]:
    """Each catalog backbone (random weights, 224 px, a 10-way head as finetune builds it) against tfmot's
    PruneForLatencyOnXNNPack pattern check (cached in ``cache``: five graphs take minutes to build)."""
    from edgekit.backbones import build_backbone, list_backbones
    from edgekit.stages.finetune import build_classifier
    from edgekit.stages.xnnpack_sparse import policy_violation

    if cache.is_file():
        return json.loads(cache.read_text())
    rows = []
    for spec in list_backbones():
        model = build_classifier(build_backbone(spec.name, input_size=224, weights=None), 10, dropout=0.2)
        rule = policy_violation(model)
        rows.append({"backbone": spec.name, "follows_pattern": rule is None, "rule_broken": rule})
    cache.write_text(json.dumps(rows, indent=1))
    return rows


def _distilled(pruning: dict) -> str:
    """How the pruned model was taught, from its manifest (compress records the distillation it did)."""
    distillation = pruning.get("distillation")
    if not distillation:
        return " on the labels"
    views = distillation.get("augmentation")
    how = (f"run on the same augmented batch (crops to {views['transforms']['crop_min_side']:g} of each side, "
           f"flips, brightness/contrast; seed {views['seed']})" if views else "on the unaugmented training images")
    return (f", distilled from the float parent (soft targets at temperature {distillation['temperature']:g}, "
            f"no labels), {how}")


def measure(*, float_dir: Path | None, work: Path, rounds: int, runs: int, epochs: int) -> dict:
    from int8_accuracy import linked_pool

    from edgekit.artifacts import load_artifact
    from edgekit.stages.compress import recorded_activation_ranges
    from edgekit.stages.xnnpack_sparse import cpu_sparse_support
    from edgekit.targets.tflite_converter import gzip_size

    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    parent = load_artifact(float_dir) if float_dir else clothing_float(224)
    pool = linked_pool(work / "pool", [CLOTHING / "test", CLOTHING / "extra"])
    variants = _variants(parent, work, pool, epochs)
    subjects = {"dense float32": _dense(parent, work), **{name: a.path for name, a in variants.items()},
                **{f"parent 1x1 pruned {round(level * 100)}% (no fine-tune), sparse-stored": path
                   for level, path in _curve_models(parent, work).items()}}
    cores = harness.pinned_cores(1)
    env = harness.environment(cores=cores, rounds=rounds)
    samples = harness.interleaved({name: (lambda path=path: harness.runner_latency(path, runs=runs, warmup=5))
                                   for name, path in subjects.items()}, rounds=rounds)
    latency, cpu = harness.summarize(samples, "p50_ms"), harness.summarize(samples, "cpu_p50_ms")
    speed = harness.speedups(samples, "p50_ms", "dense float32")
    cpu_speed = harness.speedups(samples, "cpu_p50_ms", "dense float32")
    rows = []
    for name, path in subjects.items():
        data = path.read_bytes()
        row = {"model": name, "path": harness.relative(path), "size_bytes": len(data), "gzip_bytes": gzip_size(data),
               "p50_ms": latency[name], "speedup_vs_dense": speed.get(name), "cpu_p50_ms": cpu[name],
               "cpu_speedup_vs_dense": cpu_speed.get(name)}
        artifact = variants.get(name)
        if artifact is not None:
            accuracy = artifact.manifest.metrics["accuracy"]
            row |= {"activation_ranges": recorded_activation_ranges(artifact.manifest),
                    "drop_points": accuracy["drop_points"], "drop_interval95": accuracy["interval95_points"],
                    "images": accuracy["images"], "agreement": accuracy["top1_agreement"],
                    "parent_top1": accuracy["parent_top1"], "top1": accuracy["top1"]}
        rows.append(row)
    by_name = {row["model"]: row for row in rows}
    sparse_row, int8_row = by_name["sparse float32"], by_name["int8"]
    sparse_manifest = variants["sparse float32"].manifest
    cpu_ok, cpu_reason = cpu_sparse_support()
    return {
        "what": f"dense vs sparse float32 vs int8 vs pruned+int8, MobileNetV2 224 px (head-only finetune), "
                f"clothing-small; 1x1 convolutions pruned to {SPARSITY:.0%} with {epochs} fine-tune epochs"
                f"{_distilled(sparse_manifest.extra['pruning'])}",
        "float_parent": harness.relative(parent.path), "sparsity": SPARSITY, "fine_tune_epochs": epochs,
        "rows": rows, "sparse_check": sparse_manifest.extra.get("sparse_inference"),
        "pruning": {k: v for k, v in sparse_manifest.extra["pruning"].items()},
        "backbones": _backbone_rules(work / "backbone_rules.json"),
        "cpu": {"sparse_kernels_possible": cpu_ok, "reason": cpu_reason},
        "latency_method": f"benchmarks/harness.py: {rounds} interleaved rounds after 1 warm-up round, each model "
                          f"once per round in a fresh process pinned to core {cores}, 1 thread, p50 of {runs} runs; "
                          "speed-up = dense p50 / model p50 within each round (median [min-max] over rounds); "
                          "CPU: the inference thread's CPU time per run (p50), which the shared machine's load "
                          "disturbs far less than wall time",
        "accuracy_method": "paired top-1 drop vs the float parent (positive = loss) on clothing-small test/ + "
                           "extra/, never used for fine-tuning; 95% interval from edgekit.metrics.accuracy_change",
        "goals": {"sparse_fp32_speedup_ge_1.3": sparse_row["cpu_speedup_vs_dense"]["median"] >= GOAL_SPEEDUP,
                  "sparse_fp32_drop_le_1pt": sparse_row["drop_points"] <= GOAL_DROP,
                  "sparse_fp32_beats_int8": sparse_row["cpu_p50_ms"]["median"] < int8_row["cpu_p50_ms"]["median"]},
        "elapsed_s": round(time.perf_counter() - started, 1),
        "environment": harness.finish(env),
    }


def markdown(result: dict) -> list[str]:
    dense = result["rows"][0]
    lines = ["# Sparse pruning: does it buy latency? (issue 19)", "",
             f"{result['what']}.", "", f"Latency: {result['latency_method']}.", "",
             f"Accuracy: {result['accuracy_method']}.", "",
             "| model | size MB | × dense | gzip MB | × dense gzip | CPU ms/run [min-max] | speed-up vs dense, CPU "
             "[min-max] | wall p50 ms | speed-up, wall | drop pts (95% CI) | n | agreement |",
             "|---|---:|---:|---:|---:|---|---|---|---|---|---:|---:|"]
    for row in result["rows"]:
        speed = row["speedup_vs_dense"]
        drop = (f"{row['drop_points']:+.1f} ({row['drop_interval95'][0]:+.1f} to {row['drop_interval95'][1]:+.1f})"
                if "drop_points" in row else "–")
        ranges = row.get("activation_ranges")  # int8 rows: a cached build may predate the percentile default
        name = f"{row['model']} (--activation-ranges {ranges})" if ranges else row["model"]
        lines.append(f"| {name} | {row['size_bytes'] / 1e6:.2f} | {row['size_bytes'] / dense['size_bytes']:.3f} "
                     f"| {row['gzip_bytes'] / 1e6:.2f} | {row['gzip_bytes'] / dense['gzip_bytes']:.3f} "
                     f"| {harness.cell(row['cpu_p50_ms'], unit='')} "
                     f"| {harness.cell(row['cpu_speedup_vs_dense']) if speed else '1 (baseline)'} "
                     f"| {harness.cell(row['p50_ms'], unit='')} | {harness.cell(speed) if speed else '1 (baseline)'} "
                     f"| {drop} | {row.get('images', '–')} | {row.get('agreement', '–')} |")
    check = result["sparse_check"] or {}
    goals = result["goals"]
    lines += ["", f"Sparse check at compress time: {'sparse kernels run' if check.get('used') else 'not used'}; "
              f"why not: {'; '.join(check.get('why_not', [])) or '-'}; stored sparse: {check.get('stored')}.",
              f"CPU: {result['cpu']['reason']}.", "",
              "| backbone | follows XNNPACK's sparse pattern | rule broken (tfmot PruneForLatencyOnXNNPack) |",
              "|---|---|---|"]
    lines += [f"| {b['backbone']} | {'yes' if b['follows_pattern'] else 'no'} | {b['rule_broken'] or '-'} |"
              for b in result["backbones"]]
    lines += ["", "Goals: sparse float32 >= 1.3x faster than dense float32: "
              f"{'met' if goals['sparse_fp32_speedup_ge_1.3'] else 'NOT met'}; within 1 point (this run's one pruning "
              "seed; README's row judges every seed of sparse_refit_ablation): "
              f"{'met' if goals['sparse_fp32_drop_le_1pt'] else 'NOT met'}; sparse float32 faster than int8: "
              f"{'yes' if goals['sparse_fp32_beats_int8'] else 'no'}."]
    return lines + harness.environment_lines(result["environment"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float", type=Path, default=None, help="finetuned float artifact (default: finetune one)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-sparse")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=LATENCY_PRUNE_FINE_TUNE_EPOCHS,
                        help="pruning fine-tune epochs (default: compress's for --prune-for latency)")
    args = parser.parse_args()
    if not CLOTHING.is_dir():
        print(f"skipped: {CLOTHING} is absent (set EDGEKIT_SHARED)")
        return 0
    result = measure(float_dir=args.float, work=args.work, rounds=args.rounds, runs=args.runs, epochs=args.epochs)
    harness.write_results("sparse_pruning", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
