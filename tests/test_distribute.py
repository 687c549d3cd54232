"""tf.distribute for real on this CPU machine: two worker processes on 127.0.0.1 joined by TF_CONFIG
(``multi_worker_mirrored``), and two logical CPU devices in one process (``mirrored``), each against
the same finetune run in one process. The strategies are TensorFlow's; these tests show edgekit's
finetune trains under them to the same result.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # three to four MobileNetV2 finetunes (about 2 minutes each on 2 shared cores)

# Validation accuracy may differ from one process by this much: with each batch split between replicas
# the gradients are summed in a different order, so training drifts a little. Measured here on the 269
# validation digits (10 head epochs, seed 0): 1 process 0.8476; 2 workers 0.8550 each; 2 logical CPUs
# 0.8550: 2 images apart. 0.03 is 8 images; a replica training on the wrong data would be far outside.
TOLERANCE = 0.03

TWO_LOGICAL_CPUS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from edgekit.cli import main
main(sys.argv[1:])
"""


def _finetune_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", str(data / "train"), "--out", str(out), "--backbone", "mobilenet_v2", "--input-size", "32", "--epochs", "10",
            "--augment-copies", "0", "--json", *extra]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "EDGEKIT_QUIET": "", **extra}  # progress lines on: they name the strategy


def _finished(process: subprocess.Popen, what: str) -> tuple[dict, str]:
    out, err = process.communicate(timeout=1500)
    assert process.returncode == 0, f"{what} failed: {err[-2000:]}"
    return json.loads(out), err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def one_process(digits_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("single") / "float"
    process = subprocess.Popen([sys.executable, "-m", "edgekit", *_finetune_args(digits_dir, out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    return _finished(process, "single-process finetune")[0]


def test_multi_worker_mirrored_two_local_workers_reach_the_one_process_accuracy(one_process, digits_dir, tmp_path):
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        args = _finetune_args(digits_dir, tmp_path / f"worker{index}", "--distribute", "multi_worker_mirrored")
        processes.append(subprocess.Popen([sys.executable, "-m", "edgekit", *args], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=_env(TF_CONFIG=tf_config)))
    results = [_finished(process, f"worker {i}") for i, process in enumerate(processes)]

    for summary, err in results:
        assert "with 2 replica(s)" in err  # both workers joined one cluster
        manifest = json.loads((Path(summary["model"]).parent / "manifest.json").read_text())
        assert manifest["options"]["distribute"] == "multi_worker_mirrored"
    accuracies = [summary["validation_accuracy"] for summary, _ in results]
    assert accuracies[0] == accuracies[1]  # one model, replicated: the workers end with the same weights
    assert abs(accuracies[0] - one_process["validation_accuracy"]) <= TOLERANCE, (accuracies, one_process)


def test_mirrored_on_two_logical_cpu_devices_reaches_the_one_process_accuracy(one_process, digits_dir, tmp_path):
    args = _finetune_args(digits_dir, tmp_path / "mirrored", "--distribute", "mirrored")
    process = subprocess.Popen([sys.executable, "-c", TWO_LOGICAL_CPUS, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_env())
    summary, err = _finished(process, "mirrored finetune")

    assert "MirroredStrategy with 2 replica(s)" in err
    assert abs(summary["validation_accuracy"] - one_process["validation_accuracy"]) <= TOLERANCE, (summary, one_process)
