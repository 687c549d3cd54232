"""int8 accuracy loss at defaults, per shipped backbone and input size, on 2,440 clothing-small photos never
used in training (test/ + extra/), with paired 95% intervals; and the accuracy-guarded int8 certified on a
split disjoint from its tuning split.

Per backbone (catalog name) x input size: finetune on train/ at defaults (head only, cached features),
then `compress --int8` (calibrated on train/) scored on the whole pool, plain, with `--bias-correction` and
with `--weight-rounding adaround`, and `compress --int8
--max-accuracy-drop BOUND` with the same pool as --eval-data (tuned on 40%, certified on the other
60%), plain and with `--bias-correction` (every candidate the guard tries bias-corrected on the
calibration images). Every number is the compress stage's own manifest (edgekit.metrics.accuracy_change;
positive drop = loss). Writes benchmarks/results/int8_accuracy.{json,md}; resumes from --work (a row
measured earlier gains only the methods it lacks). --only-measured rewrites the results from every row under
--work, each with the methods it has, so a row measured one method at a time joins the others.

    python benchmarks/int8_accuracy.py [--backbone efficientnet_lite0 --size 224 ...] [--bound 1.5]
    python benchmarks/int8_accuracy.py --backbone mobilenet_v2 --size 224 --method guarded-bias-correction
    python benchmarks/int8_accuracy.py --only-measured   # results from the rows under --work
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared")) / "datasets" / "clothing-small"
GOALS = {"drop_points": 1.0, "agreement": 0.95, "int8_size": 0.31, "guarded_size": 0.40}
METHODS = ("int8", "int8-bias-correction", "int8-adaround", "guarded", "guarded-bias-correction")
# method: (row key, folder under the row's work folder, compress options, label in the table); "int8" is the
# plain conversion every other method is compared with, and every row has it
PLAIN = {"int8": ("int8", "plain", {}, "int8"),
         "int8-bias-correction": ("int8_bias_correction", "bias-correction", {"bias_correction": True},
                                  "int8 + bias correction"),
         "int8-adaround": ("int8_adaround", "adaround", {"weight_rounding": "adaround"}, "int8 + AdaRound rounding")}
# method: (row key and folder under the row's work folder, compress options, label in the table)
GUARDED = {"guarded": ("guarded", {}, "guarded int8"),
           "guarded-bias-correction": ("guarded_bias_correction", {"bias_correction": True},
                                       "guarded int8 + bias correction")}


def linked_pool(out: Path, folders: list[Path]) -> Path:
    """One <class>/ folder of symlinks to every image of ``folders`` (names prefixed by their split)."""
    from edgekit.data import scan_image_folder

    if (out / ".complete").is_file():
        return out
    for folder in folders:
        for image in scan_image_folder(folder).paths:
            link = out / image.parent.name / f"{folder.name}-{image.name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(image)
    (out / ".complete").write_text("ok\n")
    return out


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _compressed(out: Path, parent, **options):
    """The int8 variant compress wrote under ``out`` earlier (a finished, atomically written run), else a new one."""
    from edgekit.artifacts import load_artifact
    from edgekit.stages.compress import compress

    if (out / "int8" / "manifest.json").is_file():
        return load_artifact(out / "int8")
    (artifact,) = compress(model=parent.path, out_dir=out, int8=True, **options)
    return artifact


def measure(backbone: str, size: int, *, data: Path, pool: Path, work: Path, bound: float,
            methods: tuple[str, ...] = METHODS) -> dict:
    """Finetune (once), plain int8 and the guarded int8 methods for one backbone/size; the row of the table."""
    from edgekit.artifacts import load_artifact, write_json_atomic
    from edgekit.stages.finetune import FinetuneConfig, finetune

    root = work / f"{backbone}-{size}"
    cached = root / "row.json"
    row: dict = json.loads(cached.read_text()) if cached.is_file() else {"backbone": backbone, "input_size": size}
    missing = [method for method in methods if (PLAIN.get(method) or GUARDED[method])[0] not in row]
    if not missing:
        return row
    started, load = time.perf_counter(), _load()
    if not (root / "float" / "manifest.json").is_file():
        finetune(data=data / "train", out_dir=root / "float", config=FinetuneConfig(backbone=backbone, input_size=size))
    parent = load_artifact(root / "float")
    row["float_validation_top1"] = parent.manifest.metrics["validation"].get("accuracy")
    row["float_parent_sha256"] = parent.manifest.sha256
    for method in (method for method in missing if method in PLAIN):
        key, folder, options, _ = PLAIN[method]
        row[key] = _plain(root / folder, parent, pool=pool, **options)
    for method in missing:
        if method in GUARDED:
            key, options, _ = GUARDED[method]
            row[key] = _guarded(root, key.replace("_", "-"), parent, pool=pool, bound=bound, **options)
    if "wall_s" not in row:  # the first measurement of the row (later ones record their own in their method)
        row.update(wall_s=round(time.perf_counter() - started, 1), load_at_start=load, load_at_end=_load())
    # With the methods measured so far (the results show only those), merged over the row as it is now on disk:
    # another run may have added a method to it meanwhile.
    on_disk = json.loads(cached.read_text()) if cached.is_file() else {}
    write_json_atomic(cached, on_disk | row)
    return on_disk | row


def _plain(out: Path, parent, *, pool: Path, **options) -> dict:
    """The row of ``compress --int8`` (plus ``options``) scored on the whole pool, from its manifest."""
    started, load = time.perf_counter(), _load()
    compressed = _compressed(out, parent, eval_data=pool, **options)
    accuracy, size_metrics = compressed.manifest.metrics["accuracy"], compressed.manifest.metrics["size"]
    measured = {key: accuracy[key] for key in (
        "images", "parent_top1", "top1", "drop_points", "interval95_points", "upper95_points", "top1_agreement",
        "worst_class_recall_drop", "macro_f1_drop_points")}
    measured |= {"size_vs_float32_tflite": size_metrics["vs_float32_tflite"], "bytes": size_metrics["bytes"],
                 "parent_sha256": compressed.manifest.parent["sha256"]}
    for report in ("bias_correction", "weight_rounding"):  # what the method did, without its per-layer lists
        if report in compressed.manifest.extra:
            measured[report] = {key: value for key, value in compressed.manifest.extra[report].items()
                                if key != "per_layer"}
    if options:  # the plain row's time is the row's own wall_s
        measured |= {"options": options, "wall_s": round(time.perf_counter() - started, 1), "load_at_start": load,
                     "load_at_end": _load()}
    return measured


def _guarded(root: Path, folder: str, parent, *, pool: Path, bound: float, **options) -> dict:
    """The guarded int8 row of ``compress --max-accuracy-drop bound`` (plus ``options``) written under ``folder``;
    a run that failed certification writes no model, so its error is kept in <folder>-failed.json."""
    from edgekit.artifacts import write_json_atomic
    from edgekit.errors import AccuracyError, UsageError
    from edgekit.stages.quantize import ACCEPTANCE_RULE

    failed = root / f"{folder}-failed.json"
    if failed.is_file():
        return json.loads(failed.read_text())
    started, load = time.perf_counter(), _load()
    measured = {"options": options, "load_at_start": load, "acceptance_rule": ACCEPTANCE_RULE,
                "parent_sha256": parent.manifest.sha256}
    try:
        guarded = _compressed(root / folder, parent, max_accuracy_drop=bound, eval_data=pool, **options)
    except (AccuracyError, UsageError) as exc:
        row = {"bound_points": bound, "certified": False, "error": exc.one_line(),
               "smallest_certifiable_bound_points": getattr(exc, "smallest_certifiable_bound_points", None),
               "wall_s": round(time.perf_counter() - started, 1)} | measured
        write_json_atomic(failed, row)
        return row
    guard = guarded.manifest.extra["accuracy_guard"]
    row = measured | {
        "bound_points": bound, "certified": guard["certified"], "tuning_images": guard["tuning_images"],
        "certification": guard["certification"], "kept_float_layers": guard["kept_float_layers"],
        "attempts": guard["attempts"], "acceptance_rule": guard["acceptance_rule"],
        "certification_plan": guard["certification_plan"], "certification_looks": guard["certification_looks"],
        "size_vs_float32_tflite": guarded.manifest.metrics["size"]["vs_float32_tflite"],
        "worst_layers_rmse_over_scale": worst_layers(guard),
        "wall_s": round(time.perf_counter() - started, 1), "load_at_end": _load(),
        "parent_sha256": guarded.manifest.parent["sha256"]}  # a cached compress output keeps its own parent
    if "bias_correction" in guarded.manifest.extra:
        correction = guarded.manifest.extra["bias_correction"]
        row["bias_correction"] = {key: correction[key] for key in (
            "images", "layers_corrected", "mean_abs_channel_shift_before", "mean_abs_channel_shift_after")}
    return row


def worst_layers(guard: dict, count: int = 5) -> list[dict]:
    """The per-layer numbers behind an agreement below the goal: of the 20 layers the guard's manifest keeps from
    its debugger ranking (error per byte kept float), those with the largest int8 error (RMSE / scale of the op's
    output). Empty when the guard ran no debugger (plain int8 accepted alone, under a rule before session 27's)."""
    return sorted(guard.get("ranked_layers", []), key=lambda layer: -layer["rmse_over_scale"])[:count]


def parents(row: dict) -> dict[str, str | None]:
    """The float parent (sha256) behind each result of a row: the float's own top-1 and each method's; None
    where a result was measured before parents were recorded."""
    found = {"float": row.get("float_parent_sha256")}
    return found | {key: row[key].get("parent_sha256") for key in (*(k for k, *_ in PLAIN.values()),
                                                                    *(k for k, *_ in GUARDED.values()))
                    if key in row}


def mixed_parents(row: dict) -> bool:
    """A row whose results came from different float parents (e.g. one method re-measured on a re-finetuned
    parent beside one with no parent recorded): its methods are not comparable with each other. A row that
    recorded no parent at all (measured before session 27) cannot say."""
    return len(set(parents(row).values())) > 1


def _markdown(rows: list[dict], bound: float) -> str:
    lines = ["# int8 accuracy loss on photos never used in training", "",
             "clothing-small test/ + extra/ (the number of images is n); float parent finetuned at defaults on "
             "train/; int8 at compress's defaults, activation ranges included (percentile 99.99; min/max before "
             "session 28: int8_accuracy_minmax.md). Drop = float top-1 minus int8 top-1 in points (positive = loss), with the paired 95% "
             "interval (Bonett-Price). Size vs the float32 TFLite of the same model. \"+ bias correction\": "
             "`--bias-correction`; \"+ AdaRound rounding\": `--weight-rounding adaround` (each weight rounded up or "
             "down to reconstruct each layer's output on 64 of the calibration images). Guarded: "
             f"`--max-accuracy-drop {bound:g}`, layers chosen on 40% of the pool, certified (one-sided 95% upper "
             "bound <= the bound, Bonferroni over the guard's looks at that split: at most 2, the choice and one "
             "fallback, plain int8 included) on the other 60%. A row measured under an earlier acceptance rule "
             "says so; \"same choice as now\": plain int8 failed tuning, where that rule and this one agree.", "",
             "| backbone | size | method | n | drop (95% CI) | agreement | size vs fp32 TFLite | certified |",
             "|---|---:|---|---:|---|---:|---:|---|"]
    for row in rows:
        for key, _, _, label in PLAIN.values():
            if key in row:
                measured = row[key]
                low, high = measured["interval95_points"]
                lines.append(f"| {row['backbone']} | {row['input_size']} | {label} | {measured['images']} | "
                             f"{measured['drop_points']:+.2f} ({low:+.2f} to {high:+.2f}) | "
                             f"{measured['top1_agreement']:.3f} | {measured['size_vs_float32_tflite']:.3f}x | - |")
        for key, _, label in GUARDED.values():
            if key in row:
                lines.append(_guarded_line(row, label, row[key]))
    refusals = [(row, label, row[key]["error"]) for row in rows for key, _, label in GUARDED.values()
                if "error" in row.get(key, {})]
    if refusals:
        lines += ["", "Refused (compress exit 6 or 2; its one-line error):", ""]
        lines += [f"- {row['backbone']} {row['input_size']} {label}: {error}" for row, label, error in refusals]
    for row in filter(mixed_parents, rows):
        found = ", ".join(f"{key} {sha[:12] if sha else 'not recorded'}" for key, sha in parents(row).items())
        lines += ["", f"**Not one float parent** in {row['backbone']} {row['input_size']} ({found}): its methods "
                      "are not comparable with each other; re-measure them on one parent."]
    return "\n".join(lines) + "\n"


def _guarded_line(row: dict, label: str, guarded: dict) -> str:
    if "error" in guarded:  # the whole message goes below the table, where it doesn't stretch the column
        smallest = guarded.get("smallest_certifiable_bound_points")
        return (f"| {row['backbone']} | {row['input_size']} | {label} | - | - | - | - | no: refused"
                + (f", smallest certifiable bound {smallest:.2f}" if smallest is not None else "")
                + " (below the table) |")
    cert = guarded["certification"]
    low, high = cert["interval95_points"]
    if rule_note(guarded):
        label += f", {rule_note(guarded)}"
    return (f"| {row['backbone']} | {row['input_size']} | {label} ({len(guarded['kept_float_layers'])} layers float) | "
            f"{cert['images']} | {cert['drop_points']:+.2f} ({low:+.2f} to {high:+.2f}) | "
            f"{cert['top1_agreement']:.3f} | {guarded['size_vs_float32_tflite']:.3f}x | "
            f"{'yes' if guarded['certified'] else 'no'} (upper {_certified_upper(guarded):.2f}) |")


def rule_note(guarded: dict) -> str:
    """The acceptance rule a guarded row was measured under, when not the current one. Session 26's rule
    differs from it only where plain int8 passes tuning (accepted then alone, at one look); a run where plain
    int8 failed tuning made the choice the current rule makes."""
    from edgekit.stages.quantize import ACCEPTANCE_RULE

    if guarded.get("acceptance_rule") == ACCEPTANCE_RULE:
        return ""
    if "certification_plan" in guarded:
        return "session 26 rule" + ("" if guarded["attempts"][0]["within"] else ", same choice as now")
    return "an earlier rule" if "error" in guarded else "rule before session 26"


def _certified_upper(guarded: dict) -> float:
    """The bound certification checked: 95% over the guard's certification looks (one look before the rule
    that plans a fallback recorded it)."""
    return guarded["certification"].get("certified_upper_points", guarded["certification"]["upper95_points"])


def _goals(row: dict) -> dict[str, bool]:
    """Issue 13's goals for one row; each method is judged on its own."""
    goals = {}
    for key, *_ in PLAIN.values():
        if key in row:
            measured = row[key]
            goals |= {f"{key}_drop_le_1.0": measured["drop_points"] <= GOALS["drop_points"],
                      f"{key}_agreement_ge_0.95": measured["top1_agreement"] >= GOALS["agreement"],
                      f"{key}_size_le_0.31x": measured["size_vs_float32_tflite"] <= GOALS["int8_size"]}
    for key, *_ in GUARDED.values():
        if key in row:
            goals[f"{key}_certified"] = bool(row[key].get("certified"))
            goals[f"{key}_size_le_0.40x"] = row[key].get("size_vs_float32_tflite", 1.0) <= GOALS["guarded_size"]
    return goals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-int8-accuracy")
    parser.add_argument("--backbone", action="append", help="catalog name (repeatable)")
    parser.add_argument("--size", type=int, action="append", help="input size (repeatable)")
    parser.add_argument("--bound", type=float, default=1.5)
    parser.add_argument("--method", action="append", choices=METHODS,
                        help="measure only these (default all) and write no results; reuses earlier compress "
                             "outputs under --work and adds them to the row")
    parser.add_argument("--only-measured", action="store_true",
                        help="write the results from every row under --work (all backbones and sizes, each "
                             "with the methods measured so far); measure nothing")
    args = parser.parse_args()
    from edgekit.artifacts import write_json_atomic, write_text_atomic
    from edgekit.machine import machine_record

    pool = linked_pool(args.work / "pool", [args.data / "test", args.data / "extra"])
    rows = []
    for size in args.size or [224, 160]:
        for backbone in args.backbone or ["efficientnet_lite0", "mobilenet_v2"]:
            measured = args.work / f"{backbone}-{size}" / "row.json"
            if args.only_measured:
                if measured.is_file():
                    rows.append(json.loads(measured.read_text()))
                continue
            rows.append(measure(backbone, size, data=args.data, pool=pool, work=args.work, bound=args.bound,
                                methods=tuple(args.method or METHODS)))
            print(json.dumps(rows[-1]), flush=True)
    if args.method:  # a partial run: the rows are in --work; a full run (cached) writes the results
        return 0
    goals = {f"{r['backbone']}@{r['input_size']}": _goals(r) for r in rows}
    result = {"pool": "clothing-small test/ + extra/", "bound_points": args.bound, "rows": rows, "goals": goals,
              "mixed_parents": [f"{r['backbone']}@{r['input_size']}" for r in rows if mixed_parents(r)],
              "machine": machine_record() | {"note": "shared with other engineers; load per row"}}
    out = REPO / "benchmarks" / "results"
    write_json_atomic(out / "int8_accuracy.json", result)
    write_text_atomic(out / "int8_accuracy.md", _markdown(rows, args.bound))
    print(_markdown(rows, args.bound))
    return 0


if __name__ == "__main__":
    sys.exit(main())
