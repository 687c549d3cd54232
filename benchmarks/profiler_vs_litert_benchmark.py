"""edgekit's profiler against LiteRT's own benchmark tool, on 8 models from 96 to 224 px.

Models: MobileNetV2 finetuned on clothing-small at 96, 128, 160 and 224 px, each as float32 and full-int8
.tflite. Three cases per model, each a fresh process pinned to the same core, 1 thread, interleaved
rounds (benchmarks/harness.py), p50 of 100 timed inferences after 10 warm-up ones:

- `edgekit profile`'s runner through edgekit's runtime backend (LiteRT ``Interpreter``: set_tensor, invoke,
  get_tensor),
- the same runner on the bare ``ai_edge_litert`` Interpreter (what a remote device runs),
- ``python -m ai_edge_litert.tools.benchmark_litert_model`` (the ``CompiledModel`` API, ``run_by_name``
  on pre-allocated buffers: no input or output copy).

Goal: edgekit's p50 within 5% of the tool's, ratio taken round by round. Where a model misses it, the
absolute difference in ms shows whether it is a fixed per-call cost (what dominates sub-millisecond
models) or a proportional one. Writes benchmarks/results/profiler_vs_litert.{json,md}.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLOTHING, building, clothing_tflite_pair  # noqa: E402
from harness import (cell, environment, environment_lines, finish, interleaved, pair_ratios, pinned_cores,  # noqa: E402
                     run_process, runner_latency, summarize, write_results)

SIZES = (96, 128, 160, 224)
RUNS, WARMUP, ROUNDS = 100, 10, 5
GOAL_PCT = 5.0
TOOL = "LiteRT benchmark tool"
OURS = "edgekit profiler"


def tool_p50(model: Path, out: Path, cores: list[int]) -> dict:
    """One fresh run of LiteRT's tool: its median and minimum of RUNS inferences."""
    run_process([sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={model}",
                 f"--num_runs={RUNS}", f"--warmup_runs={WARMUP}", "--num_threads=1", f"--result_json={out}"],
                cores=cores)
    latency = json.loads(out.read_text())["latency"]
    return {"p50_ms": float(latency["median_ms"]), "min_ms": float(latency["min_ms"])}


def main() -> int:
    if not (CLOTHING / "train").is_dir():
        print(f"skipped: {CLOTHING} not found (set EDGEKIT_SHARED)", file=sys.stderr)
        return 0
    with building():  # the eight files' conversions in one child
        models = {f"MobileNetV2 {size} px {kind}": path for size in SIZES
                  for kind, path in clothing_tflite_pair(size).items()}
    cores = pinned_cores(1)
    setting = environment(cores=cores, rounds=ROUNDS)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-litert-tool-") as scratch:
        for name, path in models.items():
            print(name, file=sys.stderr, flush=True)
            out = Path(scratch) / "tool.json"
            samples = interleaved({
                OURS: lambda p=path: runner_latency(p, runs=RUNS, warmup=WARMUP),
                "bare Interpreter (runner)": lambda p=path: runner_latency(p, runs=RUNS, warmup=WARMUP,
                                                                          backend="ai_edge_litert"),
                TOOL: lambda p=path: tool_p50(p, out, cores),
            }, rounds=ROUNDS)
            p50 = summarize(samples, "p50_ms")
            ratios = pair_ratios(samples, "p50_ms", TOOL)
            difference_pct = (ratios[OURS]["median"] - 1) * 100
            rows[name] = {"p50_ms": p50, "ratio_to_tool": ratios, "difference_pct": round(difference_pct, 2),
                          "min_ms": summarize(samples, "min_ms"),
                          "min_ratio_to_tool": pair_ratios(samples, "min_ms", TOOL)[OURS],
                          "difference_ms": p50[OURS]["median"] - p50[TOOL]["median"],
                          "within_goal": abs(difference_pct) <= GOAL_PCT}
    setting = finish(setting)
    met = sum(r["within_goal"] for r in rows.values())
    payload = {"benchmark": "profiler_vs_litert", "environment": setting, "threads": 1, "runs": RUNS,
               "warmup": WARMUP, "goal_pct": GOAL_PCT, "models": rows, "within_goal": f"{met}/{len(rows)}",
               "tool": "python -m ai_edge_litert.tools.benchmark_litert_model (CompiledModel.run_by_name)"}
    lines = ["# edgekit profile vs LiteRT's benchmark_litert_model", "",
             f"MobileNetV2 finetuned on clothing-small; 1 thread, pinned; p50 of {RUNS} runs after {WARMUP} warm-up; "
             f"{ROUNDS} interleaved rounds, medians [min-max]; ratio to the tool taken round by round. "
             f"Goal: within {GOAL_PCT:.0f}% ({met}/{len(rows)} met).", "",
             "| model | tool p50 ms | edgekit p50 ms | edgekit / tool | bare Interpreter / tool | diff ms | goal "
             "| min: edgekit / tool |", "|---|---:|---:|---:|---:|---:|---|---:|"]
    for name, row in rows.items():
        p50, ratio = row["p50_ms"], row["ratio_to_tool"]
        lines.append(f"| {name} | {p50[TOOL]['median']:.3f} | {p50[OURS]['median']:.3f} | "
                     f"{cell(ratio[OURS], '.3f', '')} | {cell(ratio['bare Interpreter (runner)'], '.3f', '')} | "
                     f"{row['difference_ms']:+.3f} | {'met' if row['within_goal'] else 'MISSED'} | "
                     f"{cell(row['min_ratio_to_tool'], '.3f', '')} |")
    lines += ["", "The tool times `CompiledModel.run_by_name` on buffers it allocated once; the runner times "
              "`set_tensor` + `invoke` + `get_tensor` (an input and an output copy per call). A fixed per-call "
              "difference (column diff ms) weighs more on the smallest models. On a loaded machine both sides' runs "
              "are bimodal: the minimum stays put while the median jumps by a scheduler time slice, because other "
              "jobs preempt the pinned core (measured on 96 px int8 at load ~10: a bare Interpreter loop p50 10.05 ms, "
              "min 1.77 ms, 0.65 involuntary context switches per run; the tool, single-threaded, median 10.06 ms, "
              "min 1.75 ms), so the last column compares the fastest run of each side.",
              *environment_lines(setting)]
    write_results("profiler_vs_litert", payload, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
