"""`edgekit targets`, `edgekit export` and `edgekit compile` end to end through the CLI entry point."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import pytest

from edgekit.targets import TARGETS


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from edgekit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


@pytest.mark.parametrize("name", list(TARGETS))
def test_targets_json_lists_every_target_with_availability(capsys, monkeypatch, name):
    # Hide the Edge TPU compiler for certain, so every run sees at least one unavailable target.
    monkeypatch.setenv("EDGETPU_COMPILER", "/nonexistent/edgetpu_compiler")
    code, out, _ = run_cli(capsys, "targets", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and set(rows) == set(TARGETS)
    row, target = rows[name], TARGETS[name]
    # What is missing, found here independently of Target.available(): modules by import spec,
    # executables on PATH (or the path their environment variable names).
    missing = [m for m in target.requires if importlib.util.find_spec(m) is None]
    missing += [exe for exe, env in target.executables.items() if shutil.which(os.environ.get(env) or exe) is None]
    assert row["suffix"] == target.suffix and row["available"] is (not missing)
    if missing:
        assert row["reason"].startswith("missing ") and all(item in row["reason"] for item in missing)
    else:
        assert row["reason"] == "all requirements found"
    if name == "edgetpu":
        assert row["available"] is False and "edgetpu_compiler (executable or $EDGETPU_COMPILER)" in row["reason"]


def test_targets_table_names_each_target(capsys):
    code, out, _ = run_cli(capsys, "targets")
    assert code == 0 and all(name in out for name in TARGETS)


def test_cli_onnx_int8_export_end_to_end(capsys, tiny_float_artifact, digits_dir, tmp_path):
    code, out, err = run_cli(capsys, "export", str(tiny_float_artifact.directory), "--target", "onnx", "--int8",
                             "--calibration", str(digits_dir / "train"), "--calibration-samples", "40",
                             "--calibrate-method", "entropy", "--out", str(tmp_path / "int8"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (tmp_path / "int8" / "model.onnx").is_file() and (tmp_path / "int8" / "manifest.json").is_file()
    assert summary["quantization"]["mode"] == "static-qdq" and summary["quantization"]["calibrate_method"] == "entropy"
    assert summary["validation"]["top1_agreement"] >= 0.8 and summary["opset"] == 17


def test_cli_tflite_export_then_edgetpu_compile_of_a_float_model_is_refused(capsys, tiny_float_artifact, tmp_path):
    code, out, err = run_cli(capsys, "export", str(tiny_float_artifact.path), "--target", "tflite",
                             "--out", str(tmp_path / "tflite"))
    assert code == 0, err
    assert "model.tflite" in out and "max |diff|" in out
    code, _, err = run_cli(capsys, "compile", str(tmp_path / "tflite"), "--out", str(tmp_path / "tpu"))
    assert code == 6 and "not fully int8" in err


@pytest.mark.skipif(shutil.which("edgetpu_compiler") is not None, reason="the real compiler is installed here")
def test_cli_compile_without_compiler_prints_static_report_and_exits_7(capsys, tiny_float_artifact, digits_dir,
                                                                        tmp_path):
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder
    from edgekit.keras_io import load_keras_model
    from edgekit.targets.tflite_converter import convert_keras_to_tflite

    preprocessing = tiny_float_artifact.manifest.preprocessing_spec()
    pixels, _ = load_folder_arrays(scan_image_folder(digits_dir / "test"), preprocessing)
    model_path = tmp_path / "int8.tflite"
    convert_keras_to_tflite(load_keras_model(tiny_float_artifact.path), out_path=model_path, mode="int8",
                            representative=normalize(pixels[:40], preprocessing), io_dtype="int8")
    code, out, err = run_cli(capsys, "compile", str(model_path), "--target", "edgetpu", "--out",
                             str(tmp_path / "tpu"), "--json")
    assert code == 7 and err.startswith("error: ") and "edgetpu_report.json" in err
    report = json.loads(out)
    assert report["fully_int8"] is True and report["ops"]
    assert json.loads((tmp_path / "tpu" / "edgetpu_report.json").read_text())["model"] == str(model_path)


@pytest.mark.parametrize("argv, code, message", [
    (["export", "{model}", "--target", "tflit"], 2, "did you mean 'tflite'"),
    (["export", "{model}", "--target", "tflite", "--opset", "13"], 2, "--opset does not apply to target 'tflite'"),
    (["export", "{model}", "--target", "edgetpu"], 2, "edgekit compile"),
    (["export", "{model}", "--calibrate-method", "entropy"], 2, "only applies with --int8"),
    (["compile", "{model}", "--target", "onnx"], 2, "edgekit export"),
])
def test_cli_usage_errors_are_one_line_with_exit_code(capsys, tiny_float_artifact, argv, code, message):
    argv = [part.format(model=tiny_float_artifact.directory) for part in argv]
    got, _, err = run_cli(capsys, *argv)
    assert got == code and message in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_a_tflite_file_named_onnx(capsys, tiny_float_artifact, tmp_path):
    code, _, err = run_cli(capsys, "export", str(tiny_float_artifact.path), "--target", "tflite",
                           "--out", str(tmp_path / "tflite"))
    assert code == 0, err
    disguised = tmp_path / "in" / "model.onnx"
    disguised.parent.mkdir()
    shutil.copy(tmp_path / "tflite" / "model.tflite", disguised)
    code, _, err = run_cli(capsys, "export", str(disguised), "--target", "onnx", "--out", str(tmp_path / "o"))
    assert code == 4 and "contains a tflite model" in err
