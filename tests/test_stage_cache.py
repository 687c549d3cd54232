"""A recipe stage's cache: unchanged inputs skip the work; a guard's refusal is a verdict cached like a result."""

from __future__ import annotations

import json

import pytest

from edgekit.errors import AccuracyError, ConversionError
from edgekit.recipes.pipeline import STATE_FILE, run_stage


class CountingWork:
    """A stage's work that counts its calls and raises ``error`` (or writes one output file)."""

    def __init__(self, stage_dir, error=None):
        self.stage_dir, self.error, self.calls = stage_dir, error, 0

    def __call__(self):
        self.calls += 1
        if self.error is not None:
            raise self.error
        output = self.stage_dir / "model.tflite"
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"model")
        return [output], {"artifact": str(output)}


def _refusal() -> AccuracyError:
    return AccuracyError("guarded int8: drop upper bound 2.01 > 1.5 points on 1464 images",
                         fix="pass --max-accuracy-drop 2.01 or more", smallest_certifiable_bound_points=2.01)


def test_an_accuracy_refusal_is_recorded_and_an_unchanged_rerun_repeats_it_without_the_work(tmp_path):
    work = CountingWork(tmp_path, error=_refusal())
    for _ in range(2):
        with pytest.raises(AccuracyError) as raised:
            run_stage("compress:guarded-int8", tmp_path, {"options": {"max_accuracy_drop": 1.5}}, work)
        assert raised.value.one_line() == _refusal().one_line()
        assert raised.value.smallest_certifiable_bound_points == 2.01
    assert work.calls == 1
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["accuracy_failure"]["smallest_certifiable_bound_points"] == 2.01 and "outputs" not in state


def test_force_or_changed_inputs_try_a_refused_stage_again_and_a_success_replaces_the_verdict(tmp_path):
    refused = CountingWork(tmp_path, error=_refusal())
    with pytest.raises(AccuracyError):
        run_stage("compress:guarded-int8", tmp_path, {"bound": 1.5}, refused)
    with pytest.raises(AccuracyError):
        run_stage("compress:guarded-int8", tmp_path, {"bound": 1.5}, refused, force=True)
    assert refused.calls == 2
    passing = CountingWork(tmp_path)
    first = run_stage("compress:guarded-int8", tmp_path, {"bound": 2.5}, passing)  # a looser bound: new key
    again = run_stage("compress:guarded-int8", tmp_path, {"bound": 2.5}, passing)
    assert passing.calls == 1 and not first.skipped and again.skipped
    assert "accuracy_failure" not in json.loads((tmp_path / STATE_FILE).read_text())


def test_other_errors_are_not_cached_a_rerun_tries_again(tmp_path):
    """A converter crash or a missing tool can go away (a fix, an install): only a verdict on the data is kept."""
    work = CountingWork(tmp_path, error=ConversionError("converter crashed", fix="retry"))
    for _ in range(2):
        with pytest.raises(ConversionError):
            run_stage("compress:int8", tmp_path, {"options": {"int8": True}}, work)
    assert work.calls == 2 and not (tmp_path / STATE_FILE).exists()
