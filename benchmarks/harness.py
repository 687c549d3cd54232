"""The one way every benchmark here measures, so two numbers in README can be compared with each other.

- **Fresh process per measurement**, pinned to fixed cores (``os.sched_setaffinity``): nothing the
  parent imported (TensorFlow, other models) or allocated leaks into the number.
- **Warm-up, then interleaved rounds**: every case runs once per round, in turn (A B A B ...), so a
  burst of load from someone else on the shared machine hits all cases alike instead of one.
- **Medians with min and max**, and **ratios taken pair by pair** (case / baseline within the same
  round), which cancel most of the load that a shared machine adds.
- **Each result records** the machine, library versions, date, git commit and the load average
  before and after, and refuses to keep paths into temporary folders.

Latency of one model reuses the profiler's own child runner (:func:`edgekit.runtime.latency.measure_local`:
a fresh process pinned to the first cores, timing the runtime's ``run``); whole commands (cold start) go
through :func:`run_process`, which also reads the child's peak RSS from ``wait4``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ROUNDS, WARMUP_ROUNDS = 7, 1
LIBRARIES = ("ai-edge-litert", "onnxruntime", "tensorflow", "tf-keras", "tensorflow-model-optimization",
             "numpy", "pillow")


def pinned_cores(count: int = 1) -> list[int]:
    """The first ``count`` cores this process may use: the same ones the profiler's runner pins to."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return cores[:count]


# Runs in a small interpreter between the benchmark and the measured command. Linux copies a parent's peak
# RSS into a forked child and keeps it across exec, so a command forked straight from a benchmark that has
# built a model (TensorFlow loaded, ~600 MiB) reported ~600 MiB whatever it used; forked from this launcher
# (~10 MiB), the command's peak is its own. It times fork-to-exit and reads the command's rusage itself.
_LAUNCHER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(report, "w") as out:
    json.dump({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_kib": usage.ru_maxrss,
               "returncode": os.waitstatus_to_exitcode(status)}, out)
"""


def run_process(argv: Sequence[str], *, cores: Sequence[int], env: Mapping[str, str] | None = None,
                timeout_s: float = 600) -> dict:
    """Run ``argv`` in a fresh process pinned to ``cores``: wall and CPU seconds, peak RSS, the JSON it printed.

    Wall time runs from the fork to the command's exit: interpreter start-up, imports, work. CPU time
    (user + system) and peak RSS come from ``wait4`` on the command (in :data:`_LAUNCHER`) and include
    its own children; CPU time barely moves with other people's load, so it is recorded beside wall time.
    """
    chosen = set(cores)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        report, out, err = Path(tmp) / "report.json", Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(report), *argv], stdout=stdout,
                                    stderr=stderr, env=dict(env) if env is not None else None,
                                    start_new_session=True,  # a timeout or Ctrl-C kills the command too
                                    preexec_fn=lambda: os.sched_setaffinity(0, chosen))
            try:
                proc.wait(timeout=timeout_s)
            except BaseException as exc:  # timed out or interrupted: leave no measurement running behind
                os.killpg(proc.pid, 9)
                proc.wait()
                if isinstance(exc, subprocess.TimeoutExpired):
                    raise RuntimeError(f"{' '.join(argv[:4])} ... did not finish within {timeout_s:.0f} s") from None
                raise
        if not report.is_file():
            raise RuntimeError(f"{' '.join(argv[:4])} ... could not be started: {err.read_text().strip()[-300:]}")
        measured = json.loads(report.read_text())
        stdout_text, stderr_text = out.read_text(errors="replace"), err.read_text(errors="replace")
    if measured["returncode"] != 0:
        tail = (stderr_text.strip().splitlines() or [f"exit code {measured['returncode']}"])[-1]
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({measured['returncode']}): {tail}")
    return {"wall_s": measured["wall_s"], "cpu_s": measured["cpu_s"], "peak_rss_mib": measured["peak_rss_kib"] / 1024,
            "returncode": measured["returncode"], "reported": _last_json(stdout_text)}


def _last_json(stdout: str):
    """The JSON document a child printed: all of stdout, else its last line that is a JSON object."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else None


def runner_latency(model: Path, *, runs: int = 100, warmup: int = 10, threads: int = 1,
                   backend: str = "edgekit") -> dict:
    """One fresh, pinned profiler-runner process on ``model``: p50/min/max wall ms of ``runs`` timed inferences,
    and the p50 of the inference thread's CPU time (with 1 thread the runtime computes on the calling thread)."""
    from edgekit.runtime.latency import measure_local

    result = measure_local(Path(model), accelerator="cpu", threads=threads, runs=runs, warmup=warmup, backend=backend)
    stats = result["stats"]
    return {"p50_ms": stats["p50_ms"], "min_ms": stats["min_ms"], "max_ms": stats["max_ms"],
            "cpu_p50_ms": result["cpu_stats"]["p50_ms"]}


def interleaved(cases: Mapping[str, Callable[[], dict]], *, rounds: int = ROUNDS,
                warmup_rounds: int = WARMUP_ROUNDS, progress: bool = True) -> dict[str, list[dict]]:
    """Call every case once per round, in turn (A B A B ...), after ``warmup_rounds`` unrecorded rounds.

    Each case is a callable returning a dict of numbers (one fresh-process measurement). Returns the
    recorded dicts per case, one per round, in round order (so index i of two cases is a pair). The
    rounds are the profiler's own (:func:`edgekit.runtime.latency.interleaved_rounds`).
    """
    from edgekit.runtime.latency import interleaved_rounds

    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    names = list(cases)

    def report(index: int, measured: list[dict]) -> None:
        label = "warm-up" if index < warmup_rounds else f"round {index - warmup_rounds + 1}/{rounds}"
        print(f"  {label}: " + ", ".join(f"{name} {_brief(values)}" for name, values in zip(names, measured)),
              file=sys.stderr, flush=True)

    results = interleaved_rounds(names, lambda name: cases[name](), rounds=warmup_rounds + rounds,
                                 on_round=report if progress else None)
    return {name: per_round[warmup_rounds:] for name, per_round in zip(names, results)}


def _brief(measured: dict) -> str:
    value = next((v for v in measured.values() if isinstance(v, (int, float))), None)
    return f"{value:.4g}" if value is not None else "?"


def spread(values: Sequence[float]) -> dict:
    """Median, min and max of a list of numbers (and the count)."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(samples: Mapping[str, list[dict]], metric: str) -> dict[str, dict]:
    """``spread`` of one metric for every case, with the per-round values kept."""
    return {name: {**spread([m[metric] for m in rows]), "values": [m[metric] for m in rows]}
            for name, rows in samples.items()}


def pair_ratios(samples: Mapping[str, list[dict]], metric: str, baseline: str) -> dict[str, dict]:
    """For every case: ``case / baseline`` of ``metric`` within each round, then the ratios' spread."""
    base = [m[metric] for m in samples[baseline]]
    return {name: {**spread([m[metric] / b for m, b in zip(rows, base)]),
                   "values": [m[metric] / b for m, b in zip(rows, base)]}
            for name, rows in samples.items() if name != baseline}


def speedups(samples: Mapping[str, list[dict]], metric: str, baseline: str) -> dict[str, dict]:
    """For every case: ``baseline / case`` of ``metric`` within each round (how many times faster), then the spread."""
    base = [m[metric] for m in samples[baseline]]
    return {name: {**spread([b / m[metric] for m, b in zip(rows, base)]),
                   "values": [b / m[metric] for m, b in zip(rows, base)]}
            for name, rows in samples.items() if name != baseline}


def cell(stats: dict, fmt: str = ".2f", unit: str = "x") -> str:
    """``median [min-max]`` of a spread, for tables."""
    return f"{stats['median']:{fmt}}{unit} [{stats['min']:{fmt}}-{stats['max']:{fmt}}]"


def load_average() -> dict:
    """The 1/5/15-minute load averages (and what they mean on this machine's core count)."""
    one, five, fifteen = os.getloadavg()
    return {"1min": round(one, 2), "5min": round(five, 2), "15min": round(fifteen, 2), "cores": os.cpu_count()}


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except OSError:
        return None
    return done.stdout.strip() or None


def environment(*, cores: Sequence[int] | None = None, rounds: int | None = None) -> dict:
    """What a result was measured on: machine, versions, date, commit, load now (call again at the end)."""
    from edgekit.artifacts import library_versions
    from edgekit.machine import machine_record

    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine_record() | {"pinned_cores": list(cores) if cores is not None else None},
            "versions": library_versions(*LIBRARIES), "commit": git_commit(),
            "rounds": rounds, "warmup_rounds": WARMUP_ROUNDS if rounds else None,
            "load_before": load_average(),
            "note": "shared machine: other engineers' jobs run at the same time; compare ratios, not absolutes"}


def _temporary_paths(text: str) -> list[str]:
    roots = {tempfile.gettempdir(), "/tmp", "/var/tmp"}
    return sorted({root for root in roots if f"{root}/" in text})


def write_results(name: str, payload: dict, markdown: list[str], *, results: Path = RESULTS) -> Path:
    """Write ``name.json`` and ``name.md`` atomically (and print the Markdown); refuse temporary paths."""
    from edgekit.artifacts import write_json_atomic, write_text_atomic

    text = json.dumps(payload, default=str) + "\n".join(markdown)
    leaked = _temporary_paths(text)
    if leaked:
        raise ValueError(f"results for {name} mention a temporary folder ({', '.join(leaked)}): "
                         "record paths relative to the repository or describe the model instead")
    results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(results / f"{name}.json", payload)
    write_text_atomic(results / f"{name}.md", "\n".join(markdown) + "\n")
    print("\n".join(markdown))
    return results / f"{name}.json"


def finish(env: dict) -> dict:
    """``env`` with the load average after the measurements added."""
    return {**env, "load_after": load_average()}


def environment_lines(env: dict) -> list[str]:
    """The Markdown footer every results file carries: when, where, with what, under which load."""
    machine, before, after = env["machine"], env["load_before"], env["load_after"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if k not in ("platform",))
    features = f"features {' '.join(machine['cpu_features'])}, " if machine.get("cpu_features") else ""
    return ["", f"Measured {env['date']} at commit {env['commit']} on {machine['cpu']} ({machine['cores']} cores, "
            f"{features}pinned to {machine['pinned_cores']}); load average {before['1min']} before, "
            f"{after['1min']} after ({env['note']}).", "", f"Versions: {versions}."]


def relative(path: Path) -> str:
    """``path`` relative to the repository (results must not depend on where the clone lives)."""
    return os.path.relpath(Path(path).resolve(), REPO)


def accuracy_drop(labels, reference_top1, candidate_top1) -> dict:
    """Top-1 drop in points (positive = the candidate lost accuracy) with a 95% interval for paired answers.

    Both models answered the same images, so only the images where exactly one of them is right
    carry information: Wald interval on the difference of paired proportions (Agresti & Min 2005).
    """
    import numpy as np

    labels, reference_top1, candidate_top1 = (np.asarray(a) for a in (labels, reference_top1, candidate_top1))
    n = len(labels)
    only_reference = int(np.sum((reference_top1 == labels) & (candidate_top1 != labels)))
    only_candidate = int(np.sum((candidate_top1 == labels) & (reference_top1 != labels)))
    drop = (only_reference - only_candidate) / n
    half = 1.96 * np.sqrt(max(only_reference + only_candidate - (only_reference - only_candidate) ** 2 / n, 0)) / n
    return {"drop_points": 100 * drop, "ci95_points": [100 * (drop - half), 100 * (drop + half)], "images": n,
            "only_reference_right": only_reference, "only_candidate_right": only_candidate}
