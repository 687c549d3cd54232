"""Prediction-logging overhead: int8 MobileNetV2 224 px, one thread, decoded photo -> returned result.

Each round is a fresh process pinned to one core (``taskset``) that builds three Predictors on the
same model: logging off, logging on (the default: WAL, ``synchronous=NORMAL``, survives a killed
process) and logging on with ``durable=True`` (fsync per row, survives power loss). Calls alternate
A/B/C image by image over decoded clothing photos (arrays at their original size, so resizing is
part of the timed path, as on a device), after a warm-up. The overhead is the difference of the
medians within a round; the rounds' values are summarised (median, min, max). The two pieces of the
logging cost (input statistics, the SQLite insert) are timed separately too. Besides wall time, the
calling thread's CPU time is recorded (``time.thread_time``; one inference thread runs in the caller):
on a shared, overloaded machine it is the steadier measure of the work logging adds.

Run: python benchmarks/monitor_overhead.py [--model RUNS/int8] [--rounds 5 --calls 150]
(writes benchmarks/results/monitor_overhead.{json,md})
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import RESULTS, REPO, relative  # noqa: E402
from monitor_drift_clothing import WORK, build_model  # noqa: E402

DATA = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared")) / "datasets" / "clothing-small"
CONFIGS = ("off", "log", "log_durable")

CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from edgekit.data import load_image
from edgekit.runtime import Predictor
from edgekit.runtime.predlog import PredictionLog, image_statistics

model, work, calls, warmup = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
photos = [load_image(p) for p in json.loads(sys.argv[5])]
predictors = {"off": Predictor(model, threads=1),
              "log": Predictor(model, threads=1, log=PredictionLog(work / "log.sqlite")),
              "log_durable": Predictor(model, threads=1, log=PredictionLog(work / "durable.sqlite", durable=True))}
times = {name: [] for name in predictors}
cpu = {name: [] for name in predictors}
for i in range(warmup + calls):
    photo = photos[i % len(photos)]
    for name, predictor in predictors.items():
        started, started_cpu = time.perf_counter(), time.thread_time()
        predictor.predict(photo, top_k=5)
        elapsed, elapsed_cpu = time.perf_counter() - started, time.thread_time() - started_cpu
        if i >= warmup:
            times[name].append(elapsed * 1000)
            cpu[name].append(elapsed_cpu * 1000)
pixels = predictors["off"]._pixels(photos[0])
started = time.perf_counter()
for _ in range(calls):
    image_statistics(pixels)
stats_ms = (time.perf_counter() - started) * 1000 / calls
log = predictors["log"].log
probabilities = predictors["off"].run_raw(predictors["off"].preprocess(photos[0]))
ranked = [predictors["off"]._top_k(probabilities[0], 5)]
started = time.perf_counter()
for _ in range(calls):
    log.record([photos[0]], pixels[None], probabilities, ranked, model_sha256="x", seconds=0.003)
record_ms = (time.perf_counter() - started) * 1000 / calls
print(json.dumps({"p50": {k: float(np.median(v)) for k, v in times.items()},
                  "cpu_p50": {k: float(np.median(v)) for k, v in cpu.items()},
                  "mean": {k: float(np.mean(v)) for k, v in times.items()},
                  "image_statistics_ms": stats_ms, "record_ms": record_ms}))
"""


def one_round(model: Path, photos: list[str], calls: int, warmup: int, core: int) -> dict:
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-c", CHILD, str(model), work, str(calls), str(warmup), json.dumps(photos)]
        if shutil.which("taskset"):
            command = ["taskset", "-c", str(core), *command]
        env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
        return json.loads(out.strip().splitlines()[-1])


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    from edgekit.artifacts import write_json_atomic, write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="int8 MobileNetV2 224 px artifact folder (default: the drift "
                        "benchmark's, built under runs/bench if missing)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=150, help="timed calls per configuration per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--core", type=int, default=1)
    args = parser.parse_args()
    if args.model is None:
        args.model = build_model(WORK, DATA, 224)
    photos = [str(p) for p in sorted((DATA / "test").rglob("*.jpg"))[::12][:30]]
    load = Path("/proc/loadavg").read_text().split()[:3]
    rounds = [one_round(args.model, photos, args.calls, args.warmup, args.core) for _ in range(args.rounds)]
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    manifest = json.loads((args.model / "manifest.json").read_text())
    result = {
        "model": relative(args.model), "input": manifest["input"]["shape"], "dtype": manifest["input"]["dtype"],
        "threads": 1, "rounds": args.rounds, "calls_per_config_per_round": args.calls, "photos": len(photos),
        "load_average_before": load, "load_average_after": load_after,
        "p50_ms": {name: summary([r["p50"][name] for r in rounds]) for name in CONFIGS},
        "overhead_ms": {name: summary([r["p50"][name] - r["p50"]["off"] for r in rounds]) for name in CONFIGS[1:]},
        "overhead_percent": {name: summary([100 * (r["p50"][name] / r["p50"]["off"] - 1) for r in rounds])
                             for name in CONFIGS[1:]},
        "cpu_p50_ms": {name: summary([r["cpu_p50"][name] for r in rounds]) for name in CONFIGS},
        "cpu_overhead_percent": {name: summary([100 * (r["cpu_p50"][name] / r["cpu_p50"]["off"] - 1) for r in rounds])
                                 for name in CONFIGS[1:]},
        "image_statistics_ms": summary([r["image_statistics_ms"] for r in rounds]),
        "record_ms": summary([r["record_ms"] for r in rounds]),
        "goal_percent": 5.0,
    }
    write_json_atomic(RESULTS / "monitor_overhead.json", result)

    def cell(block: dict, digits: int = 3) -> str:
        return f"{block['median']:.{digits}f} ({block['min']:.{digits}f} .. {block['max']:.{digits}f})"

    md = ["# Prediction-logging overhead (int8 MobileNetV2 224 px, 1 thread)", "",
          f"Decoded photo (original size) -> returned top-5, {args.rounds} fresh processes pinned to core "
          f"{args.core}, {args.calls} calls per configuration per round, configurations alternated call by call. "
          f"Median over rounds (min .. max). Shared 2-core machine: load average {' '.join(load)} before, "
          f"{' '.join(load_after)} after.", "",
          "| configuration | wall p50 ms | wall overhead ms | wall overhead % | CPU p50 ms | CPU overhead % |",
          "|---|---|---|---|---|---|",
          f"| logging off | {cell(result['p50_ms']['off'])} | | | {cell(result['cpu_p50_ms']['off'])} | |"]
    for name, label in (("log", "logging on (WAL, synchronous=NORMAL)"), ("log_durable", "logging on, durable=True (fsync per row)")):
        md.append(f"| {label} | {cell(result['p50_ms'][name])} | {cell(result['overhead_ms'][name])} | "
                  f"{cell(result['overhead_percent'][name], 2)} | {cell(result['cpu_p50_ms'][name])} | "
                  f"{cell(result['cpu_overhead_percent'][name], 2)} |")
    md += ["", f"Pieces, timed alone: input statistics {cell(result['image_statistics_ms'])} ms, "
           f"one SQLite row (statistics + insert + commit) {cell(result['record_ms'])} ms.", "",
           f"Goal: < {result['goal_percent']:g}% with the default settings."]
    write_text_atomic(RESULTS / "monitor_overhead.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
