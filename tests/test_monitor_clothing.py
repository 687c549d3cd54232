"""Drift detection with real shifts on real photos (clothing-small): the experiment of
benchmarks/monitor_drift_clothing.py, run end to end on a freshly finetuned + int8 model."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import monitor_drift_clothing as experiment  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def drift_results(tmp_path_factory, clothing_dir) -> dict:
    work = tmp_path_factory.mktemp("monitor-clothing")
    model = experiment.build_model(work, clothing_dir, size=224)  # at 160 px the model sees too few shorts as shorts
    return experiment.run(model, clothing_dir, work)


def test_reference_comes_from_train_and_unseen_photos_raise_at_most_one_false_alarm_in_20(drift_results):
    assert drift_results["reference"] == {"input_images": 800, "heldout_images": 200}  # finetune's 80/20 split
    unshifted = drift_results["unshifted_balanced"]
    assert unshifted["subsets"] == 20 and unshifted["size"] == 200
    assert unshifted["false_alarms"] <= 1, unshifted["drifted_signals"]


@pytest.mark.parametrize("shift", sorted(experiment.EXPECTED))
def test_each_real_shift_is_flagged_naming_its_signal(drift_results, shift):
    result = drift_results["shifts"][shift]
    assert result["flagged"], f"{shift}: expected {result['expected']}, drifted {result['drifted_signals']}"


def test_brightness_shift_report_is_written_with_plots(drift_results):
    from pathlib import Path

    report = drift_results["report_of_brightness_shift"]
    assert {"json", "markdown", "html", "plot"} <= set(report)
    assert "brightness" in Path(report["markdown"]).read_text() and Path(report["plot"]).stat().st_size > 10_000
