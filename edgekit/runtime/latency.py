"""Latency (and, from the same fresh process, peak memory) of one model, each measurement in a fresh process
pinned to its cores: the one way edgekit times a model, for ``edgekit profile`` and for the stages'
own checks (XNNPACK's sparse-kernel latency signature).

The measurement runs ``edgekit/runtime/runner.py`` in a new Python process pinned to the
requested thread count (CPU affinity + ``*_NUM_THREADS``), so TensorFlow or earlier models loaded
in the caller cannot pollute the numbers. Remote devices run the very same script over SSH
(:mod:`edgekit.profiling.remote`), so local and remote results have one shape.

Why this module keeps its own launcher instead of :func:`edgekit.child_process.run_isolated`: a
measurement needs a fresh process per run that is pinned (``sched_setaffinity`` before it starts)
and has ``*_NUM_THREADS`` set before any library loads, and its peak memory (VmHWM) must hold only
the runtime and the model. A spawn pool child first re-imports the caller's ``__main__`` (the CLI,
or a user's script with TensorFlow in it) and multiprocessing, which would land in the memory
numbers and differ from the same script run over SSH; and inside :func:`~edgekit.child_process.reusing_children`
it is not fresh at all. So the runner is started as a plain script, exactly as on a device, and answers
with one JSON object on stdout (:func:`parse_runner_output`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from edgekit.errors import DeviceUnavailableError, EdgekitError
from edgekit.runtime.runner import EXIT_RUNTIME_MISSING, summarize

RUNNER = Path(__file__).resolve().parent / "runner.py"
__all__ = ["RUNNER", "interleaved_rounds", "measure_local", "parse_runner_output", "ratios_to_first",
           "runner_arguments", "summarize"]
T = TypeVar("T")
R = TypeVar("R")


def runner_arguments(model_name: str, *, backend: str, accelerator: str, threads: int, runs: int, warmup: int,
                     budget_s: float | None = None, op_profile_dir: str | None = None) -> list[str]:
    """The runner's command-line arguments (after the script path), shared by local and SSH runs."""
    args = ["--model", model_name, "--backend", backend, "--accelerator", accelerator, "--threads", str(threads),
            "--runs", str(runs), "--warmup", str(warmup)]
    if budget_s:
        args += ["--budget-s", str(budget_s)]
    if op_profile_dir:
        args += ["--op-profile-dir", op_profile_dir]
    return args


def parse_runner_output(stdout: str, stderr: str, returncode: int, *, where: str,
                        error: type[EdgekitError] = DeviceUnavailableError, runtime_fix: str) -> dict:
    """The runner's JSON result, or ``error`` naming what failed on ``where``."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if returncode == EXIT_RUNTIME_MISSING and result:
        raise error(f"{where}: {result['error']}", fix=runtime_fix)
    if isinstance(result, dict) and result.get("fix"):  # the runner met an edgekit error: pass it on whole
        raise error(f"{where}: {result['error']}", fix=result["fix"])
    if returncode != 0 or not isinstance(result, dict) or "error" in result:
        detail = result["error"] if isinstance(result, dict) and "error" in result else \
            (stderr.strip().splitlines() or [f"exit code {returncode}"])[-1]
        raise error(f"{where}: the measurement failed: {detail}",
                    fix="run with --debug for the full log; check the model runs with `edgekit predict`")
    return result


def _pin(threads: int):
    """A ``preexec_fn`` restricting the child to ``threads`` of the cores this process may use."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    chosen = set(cores[:threads]) if threads < len(cores) else set(cores)
    return lambda: os.sched_setaffinity(0, chosen)


def measure_local(model: Path, *, accelerator: str, threads: int, runs: int, warmup: int,
                  budget_s: float | None = None, op_profile_dir: Path | None = None, timeout_s: float = 600,
                  backend: str = "edgekit") -> dict:
    """Run the runner in a fresh local process, through edgekit's runtime backends unless ``backend`` names
    a bare runtime (what a remote device runs; used to compare local and remote numbers like for like)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env[var] = str(threads)
    command = [sys.executable, str(RUNNER)] + runner_arguments(
        str(Path(model).resolve()), backend=backend, accelerator=accelerator, threads=threads, runs=runs,
        warmup=warmup, budget_s=budget_s, op_profile_dir=str(op_profile_dir) if op_profile_dir else None)
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s,
                              preexec_fn=_pin(threads))
    except subprocess.TimeoutExpired as exc:
        raise DeviceUnavailableError(f"profiling {model} on {accelerator} took over {timeout_s:.0f} s",
                                     fix="lower --runs or check the model") from exc
    if done.returncode != 0 and os.environ.get("EDGEKIT_DEBUG"):
        sys.stderr.write(done.stderr)
    return parse_runner_output(done.stdout, done.stderr, done.returncode, where=f"{model} on {accelerator}",
                               runtime_fix="pip install ai-edge-litert onnxruntime (edgekit[runtime])")


def interleaved_rounds(subjects: Sequence[T], measure: Callable[[T], R], *, rounds: int,
                       on_round: Callable[[int, list[R]], None] | None = None) -> list[list[R]]:
    """Measure every subject once per round, in order (A B C, A B C, ...): ``result[i][r]`` is subject i in round r.

    On a shared machine the load drifts over minutes; interleaving spreads that drift evenly over the
    subjects, so their ratios are fair where back-to-back runs (all of A, then all of B) are not.
    Pair it with a ``measure`` that starts a fresh pinned process per call (:func:`measure_local`).
    ``on_round(r, results_of_round_r)`` reports progress after each round.
    """
    if rounds < 1 or not subjects:
        raise ValueError("interleaved_rounds needs rounds >= 1 and at least one subject")
    results: list[list[R]] = [[] for _ in subjects]
    for round_index in range(rounds):
        for i, subject in enumerate(subjects):
            results[i].append(measure(subject))
        if on_round is not None:
            on_round(round_index, [per_subject[-1] for per_subject in results])
    return results


def ratios_to_first(values: list[list[float]]) -> list[dict]:
    """Per subject: the median, min and max over rounds of its value divided by the first subject's value in
    the same round (``values[i][r]``, e.g. p50 ms from :func:`interleaved_rounds`)."""
    summaries = []
    for own in values:
        per_round = [v / first for v, first in zip(own, values[0])]
        summaries.append({"ratio": round(statistics.median(per_round), 4), "min": round(min(per_round), 4),
                          "max": round(max(per_round), 4), "per_round": [round(r, 4) for r in per_round]})
    return summaries
