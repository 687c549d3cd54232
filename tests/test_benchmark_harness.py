"""benchmarks/harness.py: fresh pinned processes, interleaved rounds, pair-by-pair ratios, and results that
record where they were measured and refuse temporary paths."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import harness  # noqa: E402


def test_run_process_pins_the_child_and_reads_its_peak_memory():
    core = harness.pinned_cores(1)
    script = ("import json, os\nblock = bytearray(120 * 1024 * 1024)\n"
              "print(json.dumps({'cores': sorted(os.sched_getaffinity(0))}))")
    result = harness.run_process([sys.executable, "-c", script], cores=core)
    assert result["reported"] == {"cores": core}
    assert result["peak_rss_mib"] >= 120 and result["wall_s"] > 0


def test_run_process_peak_memory_is_the_commands_own_not_the_benchmarks():
    # Linux hands a parent's peak RSS to a forked child across exec: a benchmark holding a model in
    # memory made every command it timed look that large (596 MiB for a 53 MiB LiteRT script).
    held = bytearray(400 * 1024 * 1024)
    held[::4096] = b"\x01" * len(held[::4096])  # touch every page: resident, not just reserved
    result = harness.run_process([sys.executable, "-c", "print(1)"], cores=harness.pinned_cores(1))
    assert result["reported"] == 1
    assert result["peak_rss_mib"] < 100, result


def test_run_process_stops_a_command_past_its_timeout():
    with pytest.raises(RuntimeError, match="did not finish within 1 s"):
        harness.run_process([sys.executable, "-c", "import time; time.sleep(30)"], cores=harness.pinned_cores(1),
                            timeout_s=1)


def test_run_process_reports_a_failing_child():
    with pytest.raises(RuntimeError, match="boom"):
        harness.run_process([sys.executable, "-c", "raise SystemExit('boom')"], cores=harness.pinned_cores(1))


def test_rounds_interleave_cases_after_unrecorded_warm_up():
    calls = []

    def case(name, value):
        def run():
            calls.append(name)
            return {"ms": value + len(calls)}
        return run

    samples = harness.interleaved({"A": case("A", 0), "B": case("B", 100)}, rounds=3, warmup_rounds=1, progress=False)
    assert calls == ["A", "B"] * 4
    assert [m["ms"] for m in samples["A"]] == [3, 5, 7] and [m["ms"] for m in samples["B"]] == [104, 106, 108]


def test_ratios_are_taken_within_each_round():
    samples = {"float": [{"ms": 10.0}, {"ms": 20.0}, {"ms": 40.0}], "int8": [{"ms": 5.0}, {"ms": 10.0}, {"ms": 20.0}]}
    ratios = harness.pair_ratios(samples, "ms", "float")["int8"]
    assert ratios["values"] == [0.5, 0.5, 0.5] and ratios["min"] == ratios["max"] == 0.5  # load drift cancels
    assert harness.speedups(samples, "ms", "float")["int8"]["median"] == 2.0
    assert harness.summarize(samples, "ms")["float"] | {"values": None} == {
        "median": 20.0, "min": 10.0, "max": 40.0, "n": 3, "values": None}


def test_results_record_the_environment_and_refuse_temporary_paths(tmp_path):
    env = harness.finish(harness.environment(cores=[0], rounds=5))
    assert {"date", "machine", "versions", "load_before", "load_after", "commit"} <= set(env)
    from edgekit.machine import machine_record

    assert "ai-edge-litert" in env["versions"] and env["machine"] == machine_record() | {"pinned_cores": [0]}
    features = " ".join(env["machine"]["cpu_features"])
    assert (f"features {features}, pinned to [0]" in harness.environment_lines(env)[1]) is bool(features)
    harness.write_results("ok", {"environment": env, "model": "runs/bench/x.tflite"}, ["# ok"], results=tmp_path)
    assert json.loads((tmp_path / "ok.json").read_text())["environment"]["rounds"] == 5
    with pytest.raises(ValueError, match="temporary folder"):
        harness.write_results("bad", {"model": "/tmp/abc/model.tflite"}, ["# bad"], results=tmp_path)
    assert not (tmp_path / "bad.json").exists()
