"""`make bench`: every benchmark in its own process, one after another, then README's numbers regenerated.

A run takes hours on 2 shared cores, so one failing benchmark does not stop the others: each step's start
time, load at start, wall and CPU seconds and outcome are printed as it ends and recorded (atomically, after
every step, so a run stopped half-way still says how far it got) in ``runs/bench/make_bench.json``; the exit
status is 1 when any step failed. CPU seconds (user + system of the benchmark and the processes it waited
for) barely move with other people's load; wall time grows with it.

    python benchmarks/run_all.py                              # everything, in BENCHMARKS order
    python benchmarks/run_all.py --from compress_variants     # resume: that step and every later one
    python benchmarks/run_all.py onnx_vs_tflite fuzz_loaders  # just these
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import REPO, git_commit  # noqa: E402

BENCHMARKS = ("runtime_coldstart", "profiler_vs_litert_benchmark", "compress_variants", "op_times", "onnx_vs_tflite",
              "profile_accuracy", "edgetpu_report", "edgetpu_agreement", "monitor_drift_clothing", "monitor_overhead",
              "quickstart_time", "finetune_clothing", "recipe_clothing_small", "fuzz_loaders")
STEPS = (*BENCHMARKS, "readme_numbers")  # README's table is regenerated from whatever results there are


def run_step(name: str, *, folder: Path = HERE) -> dict:
    """Run ``folder/name.py`` in a fresh interpreter; its start, load, wall and CPU seconds and exit code."""
    started, load = time.time(), os.getloadavg()[0]
    print(f"== {name} {_utc(started)} load {load:.2f}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = subprocess.call([sys.executable, str(folder / f"{name}.py")])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = {"step": name, "start_utc": _utc(started), "load_at_start": round(load, 2),
           "wall_s": round(time.time() - started, 1), "cpu_s": round(cpu, 1),
           "result": "passed" if code == 0 else f"FAILED (exit code {code})"}
    print(f"== {name}: {row['result']} in {row['wall_s'] / 60:.1f} min ({row['cpu_s'] / 60:.1f} CPU min)", flush=True)
    return row


def run_all(steps: list[str], *, folder: Path = HERE, record: Path) -> list[dict]:
    """Every step in turn, whatever the earlier ones did; ``record`` rewritten after each."""
    from edgekit.artifacts import write_json_atomic

    rows: list[dict] = []
    for name in steps:
        rows.append(run_step(name, folder=folder))
        write_json_atomic(record, {"steps": rows, "not_run_yet": steps[len(rows):], "commit": git_commit()})
    return rows


def steps_to_run(names: list[str], start: str | None) -> list[str]:
    """The named steps (all of them when none is named), from ``start`` on when given."""
    unknown = sorted({*names, *([start] if start else [])} - set(STEPS))
    if unknown:
        raise SystemExit(f"run_all.py: unknown step(s) {', '.join(unknown)}: use some of {', '.join(STEPS)}")
    chosen = [step for step in STEPS if step in names] if names else list(STEPS)
    return chosen[chosen.index(start):] if start in chosen else chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="*", help=f"steps to run (default: all, in this order: {', '.join(STEPS)})")
    parser.add_argument("--from", dest="start", metavar="NAME", help="start at this step (resume a run after a failure)")
    parser.add_argument("--record", type=Path, default=REPO / "runs" / "bench" / "make_bench.json",
                        help="where each step's start, load, wall and CPU seconds and result are written")
    args = parser.parse_args()
    rows = run_all(steps_to_run(args.steps, args.start), record=args.record)
    failed = [row["step"] for row in rows if row["result"] != "passed"]
    print(f"== done {_utc(time.time())}: {len(rows) - len(failed)} of {len(rows)} steps passed"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


if __name__ == "__main__":
    sys.exit(main())
