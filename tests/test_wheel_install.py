"""The built wheel in fresh virtualenvs, as users install it on a board: the runtime extra (LiteRT +
onnxruntime, no TensorFlow), a tflite-runtime-only board (numpy 1.26, no ai-edge-litert), and the full
toolkit (not editable). Each venv is created once per test session (from PyPI) under the session's tmp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLOTHING, REPO

pytestmark = pytest.mark.slow
INSTALL_TIMEOUT_S = 1800


def _run(command: list[str], *, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)], cwd=out)
    assert done.returncode == 0, done.stderr[-2000:]
    return next(out.glob("edgekit-*.whl"))


def _venv(root: Path, *requirements: str) -> Path:
    """A fresh venv with ``requirements`` installed; returns its bin/ folder."""
    done = _run([sys.executable, "-m", "venv", str(root)], cwd=root.parent)
    assert done.returncode == 0, done.stderr
    done = _run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", *requirements], cwd=root.parent,
                timeout=INSTALL_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "bin"


@pytest.fixture(scope="session")
def runtime_venv(tmp_path_factory, wheel) -> Path:
    return _venv(tmp_path_factory.mktemp("venvs") / "runtime", f"{wheel}[runtime]")


@pytest.fixture(scope="session")
def tflite_runtime_venv(tmp_path_factory, wheel) -> Path:
    if sys.version_info >= (3, 12):
        pytest.skip("tflite-runtime 2.14.0 has wheels up to Python 3.11")
    return _venv(tmp_path_factory.mktemp("venvs") / "tflite-runtime", "numpy==1.26.4", "tflite-runtime==2.14.0",
                 str(wheel))


@pytest.fixture(scope="session")
def full_venv(tmp_path_factory, wheel) -> Path:
    return _venv(tmp_path_factory.mktemp("venvs") / "full", f"{wheel}[full]")


def edgekit(bin_dir: Path, *args: str, cwd: Path) -> tuple[int, str, str]:
    done = _run([str(bin_dir / "edgekit"), *args], cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def _modules(bin_dir: Path, cwd: Path) -> dict:
    script = ("import json, importlib.util as u, numpy, edgekit\n"
              "print(json.dumps({'numpy': numpy.__version__, 'edgekit': edgekit.__file__, 'present': [m for m in "
              "('ai_edge_litert', 'tflite_runtime', 'onnxruntime', 'tensorflow') if u.find_spec(m)]}))")
    done = _run([str(bin_dir / "python"), "-c", script], cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _device_commands_work(bin_dir: Path, coral: Path, cwd: Path, labels: Path, backend: str) -> str:
    """devices, backbones (the catalog inside the wheel), predict and profile; returns the top-1 label."""
    code, out, err = edgekit(bin_dir, "devices", "--json", cwd=cwd)
    assert code == 0, err
    assert {"cpu", "cpu-1t", "edgetpu"} <= {d["name"] for d in json.loads(out)}
    code, out, err = edgekit(bin_dir, "backbones", "--json", cwd=cwd)
    assert code == 0, err
    assert "mobilenet_v2" in {b["name"] for b in json.loads(out)}
    image = next((CLOTHING / "test" / "shoes").glob("*.jpg"), None)
    if image is None:
        from PIL import Image

        image = cwd / "gray.png"
        Image.new("RGB", (160, 120), (120, 120, 120)).save(image)
    code, out, err = edgekit(bin_dir, "predict", str(coral), str(image), "--labels", str(labels), "--json", "-k", "1",
                             cwd=cwd)
    assert code == 0, err
    result = json.loads(out)
    assert result["backend"] == backend
    code, out, err = edgekit(bin_dir, "profile", str(coral), "--runs", "3", "--warmup", "1", "--json", cwd=cwd)
    assert code == 0, err
    assert json.loads(out)["devices"]["cpu"]["backend"].endswith(backend)
    return result["results"][0]["top_k"][0]["label"]


@pytest.fixture(scope="session")
def imagenet_labels(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "imagenet.txt"
    path.write_text("\n".join(f"imagenet-{i}" for i in range(1001)))
    return path


def test_runtime_extra_runs_devices_predict_and_profile_without_tensorflow(
        runtime_venv, coral_model, imagenet_labels, foreign, digits_dir, tmp_path):
    modules = _modules(runtime_venv, tmp_path)
    assert "site-packages" in modules["edgekit"] and "tensorflow" not in modules["present"]
    _device_commands_work(runtime_venv, coral_model, tmp_path, imagenet_labels, "ai_edge_litert")
    code, out, err = edgekit(runtime_venv, "predict", str(foreign["onnx_nchw"]), str(digits_dir / "test" / "4"),
                             "--preprocess", "tf", "--labels", str(foreign["labels"]), "--json", cwd=tmp_path)
    assert code == 0, err
    assert json.loads(out)["backend"] == "onnxruntime" and len(json.loads(out)["results"]) > 10


def test_tflite_runtime_board_runs_predict_and_profile(tflite_runtime_venv, runtime_venv, coral_model,
                                                      imagenet_labels, tmp_path):
    modules = _modules(tflite_runtime_venv, tmp_path)
    assert modules["numpy"].startswith("1.26") and modules["present"] == ["tflite_runtime"]
    top = _device_commands_work(tflite_runtime_venv, coral_model, tmp_path, imagenet_labels, "tflite_runtime")
    assert top == _device_commands_work(runtime_venv, coral_model, tmp_path, imagenet_labels, "ai_edge_litert")


def test_full_extra_from_the_wheel_runs_every_command(full_venv, foreign, digits_dir, tmp_path):
    modules = _modules(full_venv, tmp_path)
    assert "site-packages" in modules["edgekit"] and "tensorflow" in modules["present"]
    done = _run([str(full_venv / "python"), "-c", "from edgekit.cli import commands; from edgekit.cli.app import app;"
                 "commands.register_all(); print(' '.join(c.name for c in app.registered_commands))"], cwd=tmp_path)
    commands = done.stdout.split()
    assert {"import", "compress", "export", "compile", "profile", "predict", "run"} <= set(commands), done.stderr
    for command in commands:
        assert edgekit(full_venv, command, "--help", cwd=tmp_path)[0] == 0, command
    done = _run([str(full_venv / "python"), "-c", "from edgekit.recipes.pipeline import shipped_recipe;"
                 "print(shipped_recipe('quickstart'))"], cwd=tmp_path)
    assert done.returncode == 0 and "site-packages" in done.stdout, done.stderr
    common = ["--labels", str(foreign["labels"]), "--preprocess", "tf"]
    steps = [
        ["import", str(foreign["keras"]), "--out", "imported", *common],
        ["compress", "imported", "--int8", "--calibration", str(digits_dir / "train"), "--calibration-samples", "50",
         "--out", "compressed"],
        ["export", "imported", "--target", "onnx", "--out", "onnx"],
        ["profile", "compressed/int8", "--runs", "3", "--data", str(digits_dir / "test")],
        ["predict", "compressed/int8", str(digits_dir / "test" / "3")],
        ["evaluate", "onnx", str(digits_dir / "test")],
        ["targets"], ["devices"], ["backbones"],
    ]
    for step in steps:
        code, out, err = edgekit(full_venv, *step, cwd=tmp_path)
        assert code == 0, f"{step[0]}: {err[-1500:]}"
    code, _, err = edgekit(full_venv, "compile", "compressed/int8", "--out", "tpu", cwd=tmp_path)
    assert code == 7 and (tmp_path / "tpu" / "edgetpu_report.json").is_file(), err
