"""What a new user reads: --version, usage lines, help that matches behaviour, one-line warnings, one success
line, no native log lines, device-name hints, and one exit code for every data error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_runtime import LABELS, SIZE, build_tiny_models

from edgekit import __version__
from edgekit.cli import main
from edgekit.cli.commands import HELP_ORDER
from edgekit.errors import DataError, UsageError


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits_dir) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "runtime-models", digits_dir)


def edgekit(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "EDGEKIT_QUIET"} | (env or {})
    environment["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                 environment.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=environment)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version_flag_prints_the_version(capsys):
    assert run_main(capsys, "--version")[:2] == (0, f"edgekit {__version__}\n")


@pytest.mark.parametrize("command", ["finetune", "evaluate", "compress", "export", "compile", "profile", "predict",
                                     "run", "sweep"])
def test_usage_lines_name_arguments_without_placeholder_braces(capsys, command):
    code, out, _ = run_main(capsys, command, "--help")
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert code == 0 and "{" not in usage and "}" not in usage and "[OPTIONS]" in usage


def test_top_level_help_lists_quickstart_first_then_the_pipeline_in_order():
    """A fresh process, as a user runs it, at 80 columns: the commands in the order they are used."""
    done = edgekit("--help", env={"COLUMNS": "80"})
    panel = done.stdout.split("Commands")[1]
    listed = [m.group(1) for m in re.finditer(r"^│ ([a-z][a-z-]*)\s{2,}", panel, flags=re.MULTILINE)]
    assert done.returncode == 0 and max(len(line) for line in done.stdout.splitlines()) <= 80
    assert listed[:3] == ["quickstart", "finetune", "import"]
    assert listed == HELP_ORDER


@pytest.mark.parametrize("command", ["", *HELP_ORDER], ids=lambda c: c or "edgekit")
def test_flags_show_no_value_type_in_help_at_80_columns(capsys, monkeypatch, command):
    """``--int8``, ``--json`` and ``--help`` take no value: their rows show no ``<bool>`` (Typer 0.29 adds one)."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_main(capsys, *filter(None, [command]), "--help")
    flags = [line for line in out.splitlines() if re.match(r"│[ *]+--(help|json|int8|debug|force)\b", line)]
    assert code == 0 and flags and "<bool>" not in out
    assert max(len(line) for line in out.splitlines()) <= 80


@pytest.mark.parametrize("command", ["profile", "predict", "compile"])
def test_device_side_help_does_not_offer_keras_models(capsys, command):
    _, out, _ = run_main(capsys, command, "--help")
    assert "(.tflite" in out and ".keras" not in out.replace("a .keras model must", "")


def test_profile_refuses_a_keras_model_with_one_line(capsys, tmp_path):
    keras = tmp_path / "model.keras"
    keras.write_bytes(b"PK\x03\x04not really")  # refused by format before any loading
    code, _, err = run_main(capsys, "profile", str(keras))
    assert code != 0 and "error:" in err


def test_unknown_device_outside_the_repository_points_at_devices_folder_and_env_var(tmp_path, monkeypatch):
    from edgekit.devices import get_device

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEKIT_DEVICES", raising=False)
    with pytest.raises(UsageError) as info:
        get_device("rpi4")
    assert "./devices" in info.value.one_line() and "EDGEKIT_DEVICES" in info.value.one_line()


def test_one_class_and_empty_folders_are_both_data_errors(capsys, digits_dir, tmp_path):
    one_class = tmp_path / "one" / "7"
    one_class.mkdir(parents=True)
    for path in sorted((digits_dir / "train" / "7").iterdir())[:5]:
        shutil.copy(path, one_class)
    (tmp_path / "empty").mkdir()
    codes = [run_main(capsys, "finetune", str(folder), "--out", str(tmp_path / "out"))[0]
             for folder in (tmp_path / "one", tmp_path / "empty")]
    assert codes == [DataError.exit_code, DataError.exit_code]


def test_unreadable_image_warning_is_one_clean_line_and_a_bare_tflite_evaluates(tiny_models, digits_dir, tmp_path):
    data = tmp_path / "data"
    for label in LABELS:  # the tiny models' labels are digit-0 ... digit-9
        shutil.copytree(digits_dir / "test" / label.removeprefix("digit-"), data / label)
    jpeg = data / "digit-3" / "truncated.jpg"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 10, 10)).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[:400])
    bare = tmp_path / "device" / "model.tflite"  # copied to a device without its manifest.json
    bare.parent.mkdir()
    shutil.copy(tiny_models["float"], bare)
    done = edgekit("evaluate", str(bare), str(data), "--json")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "unreadable" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipped 1 unreadable file(s)")
    assert "UserWarning" not in done.stderr and ".py:" not in done.stderr
    assert '"accuracy"' in done.stdout


def test_litert_xnnpack_info_line_does_not_reach_the_terminal(tiny_models):
    script = (f"import numpy as np; from edgekit.targets.tflite_converter import run_tflite; "
              f"data = open({str(tiny_models['float'])!r}, 'rb').read(); "
              f"print(run_tflite(data, np.zeros((2, {SIZE}, {SIZE}, 3), np.float32)).shape)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert "XNNPACK" not in done.stdout + done.stderr


def test_export_prints_its_success_line_once(digits_dir, tmp_path):
    from test_profile import build_digits_pair

    parent, _ = build_digits_pair(tmp_path / "pair", digits_dir)
    done = edgekit("export", str(parent.directory), "--target", "tflite", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).count("wrote ") == 1 and done.stdout.startswith("wrote ")
