"""The benchmarks build a float32 + int8 TFLite pair with one conversion child and one float32 conversion
(benchmarks/_common.py: ``building``), where an export and a compress call would each start a child and
each convert the parent to float32."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _common  # noqa: E402


@pytest.mark.slow
def test_a_tflite_pair_starts_one_conversion_child_and_converts_its_parent_to_float32_once(
        tiny_float_artifact, digits_dir, tmp_path, monkeypatch):
    from edgekit import child_process
    from edgekit.runtime.tflite_file import parse_tflite
    from edgekit.targets import tflite_converter

    children, modes = [], []
    start_child, run_child = child_process._Worker.__init__, tflite_converter._run_child

    def counting_start(self, env, *args, **kwargs):  # the real child; conversion children (TensorFlow) counted
        if "TF_USE_LEGACY_KERAS" in env:
            children.append(self)
        start_child(self, env, *args, **kwargs)

    def counting_run(function, *args, what):  # the real conversion, its jobs recorded
        if function is tflite_converter._child_convert:
            modes.extend(job["mode"] for job in args[-1])
        return run_child(function, *args, what=what)

    monkeypatch.setattr(child_process._Worker, "__init__", counting_start)
    monkeypatch.setattr(tflite_converter, "_run_child", counting_run)
    pair = _common.tflite_pair(tiny_float_artifact.directory, tmp_path, name="tiny", calibration=digits_dir / "train")

    assert sorted(modes) == ["float32", "int8"]  # compress's float32 size baseline is the export's conversion
    assert len(children) == 1  # (the safety verifier's LiteRT child is not a conversion child)
    kinds = {kind: {t.dtype for t in parse_tflite(path.read_bytes()).main.tensors} for kind, path in pair.items()}
    assert "INT8" in kinds["int8"] and "INT8" not in kinds["float32"]
    children.clear()
    assert _common.tflite_pair(tiny_float_artifact.directory, tmp_path, name="tiny",
                               calibration=digits_dir / "train") == pair and not children  # built once
