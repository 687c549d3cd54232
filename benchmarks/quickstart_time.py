"""How long the fresh-clone quickstart takes: `edgekit quickstart` into an empty output folder, then again
unchanged (every stage skipped), each in a fresh process on all cores, with the load average around it.

The pipeline is what `make quickstart` runs after installing; the install itself (pip, minutes, network)
is not timed. Stage times come from the recipe's own summary. Goal: <= 3 minutes of pipeline on 2 cores.
Also recorded: the backbone, the run's pick and the int8 variant's accuracy drop with its interval (the
quickstart's constraint is a drop of at most 1 point). Writes benchmarks/results/quickstart_time.{json,md}.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK  # noqa: E402
from harness import REPO, environment, environment_lines, finish, pinned_cores, run_process, write_results  # noqa: E402

GOAL_S = 180.0


def main() -> int:
    out = WORK / "quickstart"
    shutil.rmtree(out, ignore_errors=True)
    cores = pinned_cores(os.cpu_count() or 1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "edgekit", "quickstart", "--out", str(out), "--json"]
    setting = environment(cores=cores)
    first = run_process(command, cores=cores, env=env, timeout_s=3600)
    rerun = run_process(command, cores=cores, env=env, timeout_s=600)
    setting = finish(setting)
    summary = first["reported"] or {}
    stages = [{"name": s["name"], "seconds": round(s["seconds"], 1), "skipped": s.get("skipped", False),
               "error": s.get("error")}
              for s in summary.get("stages", [])]
    payload = {"benchmark": "quickstart_time", "environment": setting, "pipeline_s": round(first["wall_s"], 1),
               "pipeline_cpu_s": round(first["cpu_s"], 1),
               "rerun_s": round(rerun["wall_s"], 1), "peak_rss_mib": round(first["peak_rss_mib"]),
               "stages": stages, "goal_s": GOAL_S, "goal_met": first["wall_s"] <= GOAL_S,
               "cores": len(cores), "backbone": _backbone(summary), "pick": _pick(summary),
               "int8": _int8_accuracy(summary)}
    lines = ["# Quickstart from an empty output folder", "",
             f"`edgekit quickstart` (embedded digits; stages {', '.join(s['name'] for s in stages)}, then profiling "
             f"and the report) in a fresh process on {len(cores)} cores: **{payload['pipeline_s']:.0f} s** "
             f"(goal <= {GOAL_S:.0f} s: {'met' if payload['goal_met'] else 'MISSED'}); unchanged rerun "
             f"{payload['rerun_s']:.0f} s. Install time (pip) not included. CPU time (user + system, children "
             f"included): {payload['pipeline_cpu_s']:.0f} s, i.e. the pipeline had "
             f"{payload['pipeline_cpu_s'] / payload['pipeline_s']:.2f} of its {len(cores)} cores on average "
             "(the rest: single-threaded steps, waiting, or other jobs on the machine).", "",
             "| stage | seconds | error |", "|---|---:|---|"]
    lines += [f"| {s['name']} | {s['seconds']} | {(s['error'] or '')[:100]} |" for s in stages]
    int8, pick = payload["int8"], payload["pick"]
    lines += ["", f"Backbone: {payload['backbone']}. int8 top-1 drop vs float: "
              + (f"{int8['drop_points']:+.2f} points (95% CI {int8['ci95_points'][0]:+.2f} to "
                 f"{int8['ci95_points'][1]:+.2f}, n={int8['images']}, agreement {int8['top1_agreement']:.3f})"
                 if int8 else "not measured")
              + ". The run's pick (constraint: drop <= 1 point): "
              + (f"{pick['variant']} on {pick['device']}, {pick['size_mb']:.2f} MB" if pick else "none") + "."]
    lines += environment_lines(setting)
    write_results("quickstart_time", payload, lines)
    return 0


def _backbone(summary: dict) -> str | None:
    """The float model's backbone, from its manifest."""
    manifest = Path(summary.get("float_model", "")).parent / "manifest.json"
    return json.loads(manifest.read_text()).get("backbone") if manifest.is_file() else None


def _pick(summary: dict) -> dict | None:
    pick = summary.get("pick")
    return None if not pick else {key: pick.get(key) for key in (
        "variant", "device", "size_mb", "accuracy", "accuracy_drop_pts", "accuracy_drop_ci95", "p50_ms")}


def _int8_accuracy(summary: dict) -> dict | None:
    """The int8 variant's drop (positive = loss), its paired 95% interval, image count and agreement."""
    row = next((r for r in summary.get("rows", []) if r.get("variant") == "int8" and r.get("accuracy_images")), None)
    return None if row is None else {
        "drop_points": row["accuracy_drop_pts"], "ci95_points": row["accuracy_drop_ci95"],
        "upper95_points": row["accuracy_drop_upper95"], "images": row["accuracy_images"],
        "top1_agreement": row["top1_agreement"], "size_mb": row["size_mb"]}


if __name__ == "__main__":
    sys.exit(main())
