"""`make bench` (benchmarks/run_all.py) runs every step whatever the earlier ones did, records each one's start,
load, wall and CPU seconds and outcome after every step, and resumes from a named step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run_all  # noqa: E402


def test_a_failing_step_does_not_stop_the_later_ones_and_each_is_recorded(tmp_path, capsys):
    (tmp_path / "busy.py").write_text("sum(i * i for i in range(3_000_000))\n")
    (tmp_path / "broken.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "last.py").write_text("open(__file__ + '.ran', 'w').close()\n")
    record = tmp_path / "make_bench.json"

    rows = run_all.run_all(["busy", "broken", "last"], folder=tmp_path, record=record)

    assert [row["result"] for row in rows] == ["passed", "FAILED (exit code 3)", "passed"]
    assert (tmp_path / "last.py.ran").is_file()
    busy = rows[0]
    assert busy["cpu_s"] > 0.05 and busy["wall_s"] >= 0 and busy["load_at_start"] >= 0  # the child's own CPU time
    assert busy["start_utc"].endswith("Z")
    saved = json.loads(record.read_text())
    assert saved["steps"] == rows and saved["not_run_yet"] == []
    assert "== broken: FAILED (exit code 3)" in capsys.readouterr().out


def test_steps_resume_from_a_named_one_in_make_bench_order():
    assert run_all.steps_to_run([], "fuzz_loaders") == ["fuzz_loaders", "readme_numbers"]
    assert run_all.steps_to_run(["fuzz_loaders", "runtime_coldstart"], None) == ["runtime_coldstart", "fuzz_loaders"]
    assert run_all.steps_to_run([], None) == list(run_all.STEPS)
    assert all((run_all.HERE / f"{step}.py").is_file() for step in run_all.STEPS)


def test_an_unknown_step_is_refused_with_the_known_ones():
    with pytest.raises(SystemExit, match="unknown step.*compres_variants.*compress_variants"):
        run_all.steps_to_run(["compres_variants"], None)
