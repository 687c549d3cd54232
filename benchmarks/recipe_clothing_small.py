"""The clothing-small recipe end to end, then again unchanged: stage wall times, Pareto table, pick,
rerun time and whether every metric is identical. Writes recipe_clothing_small.{json,md} (+ the run's
report.md) into benchmarks/results/.

Usage: python benchmarks/recipe_clothing_small.py [--out runs/bench/clothing-small-recipe]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLOTHING, WORK  # noqa: E402
from harness import REPO, RESULTS, environment, environment_lines, finish, write_results  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WORK / "clothing-small-recipe")
    args = parser.parse_args()
    if not (CLOTHING / "train").is_dir():
        print(f"skipped: {CLOTHING} not found (set EDGEKIT_SHARED)", file=sys.stderr)
        return 0
    from edgekit.recipes.pipeline import run_recipe

    if args.out.exists():
        shutil.rmtree(args.out)
    recipe = REPO / "recipes" / "clothing-small.yaml"
    setting = environment()
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
    # Paths inside the clone, relative to it (results must not depend on where the clone lives).
    result = json.loads(json.dumps(result, default=str).replace(f"{REPO}/", ""))
    result["environment"] = setting = finish(setting)
    lines = ["# clothing-small recipe end to end (2 shared CPU cores)", "",
             f"First run {result['first_run_s']} s; unchanged rerun {result['rerun_s']} s "
             f"({len(result['rerun_skipped'])}/{len(second['stages'])} stages skipped); metrics identical: "
             f"{result['identical_metrics']}.", "", "| stage | seconds | error |", "|---|---:|---|"]
    lines += [f"| {s['name']} | {s['seconds']} | {s['error'] or ''} |" for s in result["stages"]]
    lines += ["", "Full Pareto table and pick: recipe_clothing_small_report.md", *environment_lines(setting)]
    write_results("recipe_clothing_small", result, lines)
    shutil.copy(args.out / "report.md", RESULTS / "recipe_clothing_small_report.md")
    shutil.copy(args.out / "pareto.png", RESULTS / "recipe_clothing_small_pareto.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
