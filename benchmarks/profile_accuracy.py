"""Profiler benchmark: float vs int8 peak memory (3 fresh processes each), accuracy loss of an int8 model
against its float parent (a small CNN trained on the embedded digits), and SSH-loopback numbers next to local.

Run: python benchmarks/profile_accuracy.py   (writes benchmarks/results/profile_accuracy.{json,md})
"""

from __future__ import annotations

import getpass
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def build_mobilenet_pair(folder: Path, *, size: int = 96, alpha: float = 0.35) -> dict[str, Path]:
    """MobileNetV2 (random init, batch 1) as float and full-int8 .tflite, converted from a SavedModel."""
    from edgekit._tf import import_tf

    tf, keras = import_tf()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None, classes=10)
    inputs = keras.Input((size, size, 3), batch_size=1)
    model = keras.Model(inputs, model(inputs))
    saved = str(folder / "saved_model")
    tf.saved_model.save(model, saved)
    calibration = np.random.default_rng(0).uniform(-1, 1, (32, size, size, 3)).astype(np.float32)
    return {"float": _write_tflite(tf, saved, folder / "float.tflite"),
            "int8": _write_tflite(tf, saved, folder / "int8.tflite", calibration)}


def _write_tflite(tf, saved_model: str, path: Path, calibration: np.ndarray | None = None) -> Path:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([row[None]] for row in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def memory_repeats(models: dict[str, Path], repeats: int = 3) -> dict:
    from edgekit.profiling.latency import measure_local
    from edgekit.profiling.memory import memory_summary

    out = {}
    for name, path in models.items():
        runs = [memory_summary(measure_local(path, accelerator="cpu", threads=1, runs=1, warmup=0), path)
                for _ in range(repeats)]
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
            "report": "benchmarks/results/profile_accuracy_report/report.md"}


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
    try:
        out = {}
        for name, path in models.items():
            result = profile(model=path, devices=("cpu-1t", str(device)), runs=100, warmup=10)
            out[name] = {d: {"p50_ms": r["latency"]["p50_ms"], "p90_ms": r["latency"]["p90_ms"],
                             "peak_delta_mib": r["memory"]["peak_delta_mib"], "backend": r["backend"]}
                         for d, r in result["devices"].items()}
        return out
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    from edgekit.artifacts import write_json_atomic, write_text_atomic

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "models").mkdir()
        (tmp / "ssh").mkdir()
        models = build_mobilenet_pair(tmp / "models")
        results = {"models": "MobileNetV2 alpha 0.35, 96 px, random init, batch 1", "threads": 1,
                   "memory_3x": memory_repeats(models), "ssh_loopback_vs_local": ssh_loopback(models, tmp / "ssh"),
                   "accuracy_loss": accuracy_pair(tmp)}
    results["wall_s"] = round(time.time() - started, 1)
    write_json_atomic(RESULTS / "profile_accuracy.json", results)
    mem = results["memory_3x"]
    lines = ["# Profiler: memory repeatability, accuracy loss, SSH loopback", "",
             f"Models: {results['models']}; 1 thread; this machine (2 shared cores).", "",
             "## Peak RSS delta (VmHWM after load + first inference minus after runtime import), 3 fresh processes", "",
             "| model | deltas MiB | spread MiB | file MiB | activations MiB (estimate) |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {', '.join(f'{d:.2f}' for d in m['peak_delta_mib'])} | {m['spread_mib']:.2f} | "
              f"{m['model_file_mib']:.2f} | {m['activation_mib_estimate']:.2f} |" for n, m in mem.items()]
    acc = results["accuracy_loss"]
    lines += ["", "## Accuracy loss: int8 .tflite vs its float .keras parent (digits test split)", "",
              f"{acc['images']} images: float top-1 {acc['float_top1']:.4f}, int8 top-1 {acc['int8_top1']:.4f}, "
              f"drop {acc['accuracy_drop_points']:+.2f} points (+ = loss), top-1 agreement {acc['top1_agreement']:.4f}; "
              f"full report: {acc['report']}", "", "## SSH loopback (same machine, bare LiteRT) vs local", ""]
    ssh = results["ssh_loopback_vs_local"]
    if "skipped" in ssh:
        lines.append(ssh["skipped"])
    else:
        lines += ["| model | device | backend | p50 ms | p90 ms | peak delta MiB |", "|---|---|---|---|---|---|"]
        lines += [f"| {m} | {d} | {r['backend']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['peak_delta_mib']:.2f} |"
                  for m, devices in ssh.items() for d, r in devices.items()]
    write_text_atomic(RESULTS / "profile_accuracy.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
