"""Training keeps the epoch with the best validation accuracy (ties: lower loss), not the last, and says which.

A deliberately high learning rate makes validation accuracy swing from epoch to epoch on the digits,
so the last epoch is worse than an earlier one (checked first: otherwise the test would prove nothing).
"""

from __future__ import annotations

import pytest

from edgekit.stages.finetune import FinetuneConfig, _better, finetune

SWINGING = {"backbone": "mobilenet_v2", "weights": "imagenet", "input_size": 32, "augment_copies": 0,
            "dropout": 0.0, "seed": 0}


def test_ties_in_accuracy_go_to_the_lower_loss():
    assert _better((0.8, 0.9), (0.7, 0.1)) and _better((0.8, 0.4), (0.8, 0.5)) and _better((0.1, 9.0), None)
    assert not _better((0.8, 0.5), (0.8, 0.5)) and not _better((0.7, 0.1), (0.8, 0.9))


def test_head_training_keeps_its_best_epoch_and_reports_it(digits_dir, tmp_path):
    config = FinetuneConfig(**SWINGING, epochs=8, learning_rate=0.3, early_stopping=0)
    result = finetune(data=digits_dir / "train", out_dir=tmp_path / "out", config=config)
    history = result.artifact.manifest.extra["history"]["head"]
    accuracy, loss = history["val_accuracy"], history["val_loss"]
    assert accuracy[-1] < max(accuracy), "the swing this test relies on did not happen"
    best = max(range(len(accuracy)), key=lambda i: (accuracy[i], -loss[i])) + 1
    kept = result.kept_epochs["head"]
    assert (kept["epoch"], kept["of"]) == (best, 8)
    assert result.artifact.manifest.extra["kept_epochs"]["head"]["epoch"] == best
    assert result.metrics["accuracy"] == pytest.approx(accuracy[best - 1], abs=1e-6)


@pytest.mark.slow  # end-to-end fine-tuning of the top backbone layers (~1 min on 2 cores)
def test_fine_tuning_keeps_its_best_epoch_or_the_model_before_it(digits_dir, tmp_path):
    config = FinetuneConfig(**SWINGING, epochs=5, early_stopping=0, fine_tune_layers=20, fine_tune_epochs=2,
                            fine_tune_learning_rate=0.05)
    result = finetune(data=digits_dir / "train", out_dir=tmp_path / "out", config=config)
    tuned = result.artifact.manifest.extra["history"]["fine_tune"]["val_accuracy"]
    kept = result.kept_epochs["fine_tune"]
    assert tuned[-1] < result.metrics["accuracy"] - 1e-6, "the last fine-tune epoch should be worse than the kept one"
    assert result.metrics["accuracy"] >= max(tuned) - 1e-6
    if kept["epoch"]:
        assert result.metrics["accuracy"] == pytest.approx(tuned[kept["epoch"] - 1], abs=1e-6)
    else:  # no fine-tune epoch beat the head-only model, which is what was kept
        assert result.metrics["accuracy"] == pytest.approx(result.kept_epochs["head"]["val_accuracy"], abs=1e-6)
