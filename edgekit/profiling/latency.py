"""Latency (and, from the same fresh process, peak memory) of one model on one local device.

The measurement runs ``edgekit/profiling/runner.py`` in a new Python process pinned to the
profile's thread count (CPU affinity + ``*_NUM_THREADS``), so TensorFlow or earlier models loaded
in the caller cannot pollute the numbers. Remote devices run the very same script over SSH
(:mod:`edgekit.devices.ssh`), so local and remote results have one shape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from edgekit.errors import DeviceUnavailableError, EdgekitError
from edgekit.profiling.runner import EXIT_RUNTIME_MISSING, summarize

RUNNER = Path(__file__).resolve().parent / "runner.py"
__all__ = ["RUNNER", "measure_local", "parse_runner_output", "runner_arguments", "summarize"]


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
