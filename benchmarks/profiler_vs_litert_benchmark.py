"""Our profiler's p50 against LiteRT's own benchmark tool on the same model and thread count.

ai-edge-litert 2.3.0 ships ``ai_edge_litert/tools/benchmark_litert_model.py`` (it times
``CompiledModel.run_by_name``; our runner times ``Interpreter.invoke`` through edgekit's backend).
Both run in fresh processes, alternated, 3 rounds; the medians of the rounds are compared.
Run: python benchmarks/profiler_vs_litert_benchmark.py  (writes benchmarks/results/profiler_vs_litert.{json,md})
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_accuracy import RESULTS, build_mobilenet_pair  # noqa: E402

RUNS, WARMUP, ROUNDS, THREADS = 200, 20, 3, 1
CONFIGS = ((0.35, 96), (1.0, 224))  # (alpha, input size): a tiny and a full-size model


def litert_tool_p50(model: Path, out: Path) -> float:
    subprocess.run([sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={model}",
                    f"--num_runs={RUNS}", f"--warmup_runs={WARMUP}", f"--num_threads={THREADS}",
                    f"--result_json={out}"], check=True, capture_output=True, text=True)
    return float(json.loads(out.read_text())["latency"]["median_ms"])


def ours_p50(model: Path) -> float:
    from edgekit.profiling import profile

    return profile(model=model, devices=("cpu-1t",), runs=RUNS, warmup=WARMUP)["devices"]["cpu-1t"]["latency"]["p50_ms"]


def main() -> None:
    from edgekit.artifacts import write_json_atomic, write_text_atomic

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for alpha, size in CONFIGS:
            folder = Path(tmp) / f"a{alpha}-{size}"
            folder.mkdir()
            models.update({f"MobileNetV2 a{alpha} {size}px {k}": v
                           for k, v in build_mobilenet_pair(folder, size=size, alpha=alpha).items()})
        for name, path in models.items():
            ours, tool = [], []
            for round_ in range(ROUNDS):
                ours.append(ours_p50(path))
                tool.append(litert_tool_p50(path, Path(tmp) / f"{name.replace(' ', '_')}-{round_}.json"))
            a, b = statistics.median(ours), statistics.median(tool)
            rows[name] = {"ours_p50_ms": ours, "litert_tool_p50_ms": tool, "ours_median": a, "tool_median": b,
                          "difference_pct": round((a - b) / b * 100, 2), "within_5pct": abs(a - b) / b <= 0.05}
    result = {"model": "MobileNetV2, random init, batch 1", "threads": THREADS, "runs": RUNS,
              "warmup": WARMUP, "rounds": ROUNDS, "tool": "ai_edge_litert.tools.benchmark_litert_model (CompiledModel API)",
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": rows}
    write_json_atomic(RESULTS / "profiler_vs_litert.json", result)
    lines = ["# edgekit profile vs LiteRT's benchmark_litert_model", "",
             f"{result['model']}; {THREADS} thread; {RUNS} runs after {WARMUP} warm-up; {ROUNDS} alternating rounds "
             "on a shared 2-core machine.", "", "| model | ours p50 ms (rounds) | LiteRT tool p50 ms (rounds) | diff | within 5% |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {', '.join(f'{v:.3f}' for v in r['ours_p50_ms'])} | {', '.join(f'{v:.3f}' for v in r['litert_tool_p50_ms'])} "
              f"| {r['difference_pct']:+.1f}% | {'yes' if r['within_5pct'] else 'NO'} |" for n, r in rows.items()]
    write_text_atomic(RESULTS / "profiler_vs_litert.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
