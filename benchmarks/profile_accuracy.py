"""Profiler benchmark: float vs int8 peak memory in fresh processes (interleaved rounds), accuracy loss of an
int8 model against its float parent (a small CNN trained on the embedded digits), and SSH-loopback numbers
next to local. Models: MobileNetV2 96 px finetuned on clothing-small (benchmarks/_common.py); everything is
built under runs/bench, so the report in benchmarks/results names no temporary path.

Run: python benchmarks/profile_accuracy.py   (writes benchmarks/results/profile_accuracy.{json,md})
"""

from __future__ import annotations

import getpass
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLOTHING, WORK, clothing_tflite_pair  # noqa: E402
from harness import (REPO, RESULTS, environment, environment_lines, finish, interleaved, pinned_cores,  # noqa: E402
                     relative, write_results)

ROUNDS = 3


def memory_repeats(models: dict[str, Path]) -> dict:
    """Peak RSS delta (after load + first inference minus after the runtime import) in fresh processes."""
    from edgekit.runtime.latency import measure_local
    from edgekit.profiling.memory import memory_summary

    samples = interleaved({name: (lambda p=path: memory_summary(measure_local(p, accelerator="cpu", threads=1, runs=1,
                                                                              warmup=0), p))
                           for name, path in models.items()}, rounds=ROUNDS, warmup_rounds=0)
    out = {}
    for name, runs in samples.items():
        deltas = [r["peak_delta_mib"] for r in runs]
        out[name] = {"peak_delta_mib": deltas, "spread_mib": round(max(deltas) - min(deltas), 3),
                     "peak_rss_mib": [r["peak_rss_mib"] for r in runs], "model_file_mib": runs[0]["model_file_mib"],
                     "activation_mib_estimate": runs[0]["activation_mib_estimate"]}
    return out


def accuracy_pair(folder: Path) -> dict:
    """A small CNN trained on the embedded digits (float .keras artifact) and its int8 child, profiled with --data."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_profile import build_digits_pair

    from edgekit.data import write_digits_dataset
    from edgekit.profiling import profile

    digits = write_digits_dataset(folder / "digits", size=32)
    _, child = build_digits_pair(folder / "pair", digits)
    result = profile(model=child.directory, devices=("cpu-1t",), data=digits / "test", runs=50, warmup=5,
                     report_dir=RESULTS / "profile_accuracy_report")
    accuracy = result["accuracy"]
    return {"images": accuracy["images"], "int8_top1": accuracy["model"]["accuracy"],
            "float_top1": accuracy["parent"]["accuracy"], "accuracy_drop_points": accuracy["accuracy_drop"],
            "top1_agreement": accuracy["top1_agreement"], "int8_p50_ms": result["devices"]["cpu-1t"]["latency"]["p50_ms"],
            "report": relative(RESULTS / "profile_accuracy_report" / "report.md")}


def ssh_loopback(models: dict[str, Path], folder: Path) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from test_remote_ssh import SSHD, start_loopback_sshd
    except ImportError as exc:
        return {"skipped": f"test helpers unavailable: {exc}"}
    if not SSHD:
        return {"skipped": "sshd not installed (apt-get install -y openssh-server)"}
    from edgekit.profiling import profile

    process, port, key, known_hosts = start_loopback_sshd(folder)
    device = folder / "loopback.yaml"
    device.write_text(f"name: loopback\naccelerator: cpu\nthreads: 1\ntransport: ssh\n"
                      f"ssh: {{host: 127.0.0.1, port: {port}, user: {getpass.getuser()}, key: '{key}', "
                      f"known_hosts: '{known_hosts}', python: '{sys.executable}'}}\n")
    def measured(path: Path, where: str):
        def once() -> dict:
            (r,) = profile(model=path, devices=(where,), runs=100, warmup=10)["devices"].values()
            return {"p50_ms": r["latency"]["p50_ms"], "p90_ms": r["latency"]["p90_ms"],
                    "peak_delta_mib": r["memory"]["peak_delta_mib"], "backend": r["backend"]}
        return once

    try:
        out = {}
        for name, path in models.items():  # local and loopback alternate, so both see the same load
            samples = interleaved({"cpu-1t": measured(path, "cpu-1t"), "loopback": measured(path, str(device))},
                                  rounds=ROUNDS, warmup_rounds=0)
            out[name] = {where: {**{k: statistics.median(r[k] for r in runs)
                                    for k in ("p50_ms", "p90_ms", "peak_delta_mib")}, "backend": runs[0]["backend"]}
                         for where, runs in samples.items()}
        return out
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> int:
    if not (CLOTHING / "train").is_dir():
        print(f"skipped: {CLOTHING} not found (set EDGEKIT_SHARED)", file=sys.stderr)
        return 0
    started = time.time()
    models = clothing_tflite_pair(96)
    setting = environment(cores=pinned_cores(1), rounds=ROUNDS)
    with tempfile.TemporaryDirectory(prefix="edgekit-ssh-") as tmp:
        results = {"models": "MobileNetV2 96 px finetuned on clothing-small, float32 and int8 .tflite", "threads": 1,
                   "memory_3x": memory_repeats(models), "ssh_loopback_vs_local": ssh_loopback(models, Path(tmp)),
                   "accuracy_loss": accuracy_pair(WORK / "digits-accuracy")}
    results["wall_s"] = round(time.time() - started, 1)
    results["environment"] = setting = finish(setting)
    mem = results["memory_3x"]
    lines = ["# Profiler: memory repeatability, accuracy loss, SSH loopback", "",
             f"Models: {results['models']}; 1 thread; pinned.", "",
             f"## Peak RSS delta (VmHWM after load + first inference minus after runtime import), {ROUNDS} fresh "
             "processes each, interleaved", "",
             "| model | deltas MiB | spread MiB | file MiB | activations MiB (estimate) |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {', '.join(f'{d:.2f}' for d in m['peak_delta_mib'])} | {m['spread_mib']:.2f} | "
              f"{m['model_file_mib']:.2f} | {m['activation_mib_estimate']:.2f} |" for n, m in mem.items()]
    acc = results["accuracy_loss"]
    lines += ["", "## Accuracy loss: int8 .tflite vs its float .keras parent (digits test split)", "",
              f"{acc['images']} images: float top-1 {acc['float_top1']:.4f}, int8 top-1 {acc['int8_top1']:.4f}, "
              f"drop {acc['accuracy_drop_points']:+.2f} points (+ = loss), top-1 agreement {acc['top1_agreement']:.4f}; "
              f"full report: {acc['report']}", "",
              f"## SSH loopback (same machine, bare LiteRT) vs local: medians of {ROUNDS} interleaved rounds", ""]
    ssh = results["ssh_loopback_vs_local"]
    if "skipped" in ssh:
        lines.append(ssh["skipped"])
    else:
        lines += ["| model | device | backend | p50 ms | p90 ms | peak delta MiB |", "|---|---|---|---|---|---|"]
        lines += [f"| {m} | {d} | {r['backend']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['peak_delta_mib']:.2f} |"
                  for m, devices in ssh.items() for d, r in devices.items()]
    lines += environment_lines(setting)
    write_results("profile_accuracy", results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
