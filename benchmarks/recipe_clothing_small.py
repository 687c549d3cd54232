"""The clothing-small recipe end to end, then again unchanged: stage wall times, Pareto table, pick,
rerun time and whether every metric is identical. Writes recipe_clothing_small.{json,md} (+ the run's
report.md) into benchmarks/results/.

Usage: python benchmarks/recipe_clothing_small.py [--out runs/bench-clothing-small]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("EDGEKIT_QUIET", "1")
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-clothing-small")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    from edgekit.recipes.pipeline import run_recipe

    if args.out.exists():
        shutil.rmtree(args.out)
    recipe = REPO / "recipes" / "clothing-small.yaml"
    start = time.perf_counter()
    first = run_recipe(recipe_path=recipe, out_dir=args.out)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    second = run_recipe(recipe_path=recipe, out_dir=args.out)
    rerun_s = time.perf_counter() - start
    metric = lambda s: [(r["variant"], r["device"], r.get("accuracy"), r.get("size_mb")) for r in s["rows"]]  # noqa: E731
    result = {"first_run_s": round(first_s, 1), "rerun_s": round(rerun_s, 1),
              "stages": [{"name": s["name"], "seconds": round(s["seconds"], 1), "error": s["error"]}
                         for s in first["stages"]],
              "rerun_skipped": [s["name"] for s in second["stages"] if s["skipped"]],
              "rerun_ran": [s["name"] for s in second["stages"] if not s["skipped"]],
              "identical_metrics": metric(first) == metric(second) and
                                   first["reference_accuracy"] == second["reference_accuracy"],
              "reference_accuracy": first["reference_accuracy"], "pick": first["pick"], "pareto": first["pareto"]}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "recipe_clothing_small.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    lines = ["# clothing-small recipe end to end (2 shared CPU cores)", "",
             f"First run {result['first_run_s']} s; unchanged rerun {result['rerun_s']} s "
             f"({len(result['rerun_skipped'])}/{len(second['stages'])} stages skipped); metrics identical: "
             f"{result['identical_metrics']}.", "", "| stage | seconds | error |", "|---|---:|---|"]
    lines += [f"| {s['name']} | {s['seconds']} | {s['error'] or ''} |" for s in result["stages"]]
    lines += ["", "Full Pareto table and pick: recipe_clothing_small_report.md"]
    (args.results / "recipe_clothing_small.md").write_text("\n".join(lines) + "\n")
    shutil.copy(args.out / "report.md", args.results / "recipe_clothing_small_report.md")
    shutil.copy(args.out / "pareto.png", args.results / "recipe_clothing_small_pareto.png")
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
