"""benchmarks/int8_recovery.py --part qat: QAT is compared with the same fine-tune in float, paired on the
same photos, from the outputs each arm cached (the training itself is the benchmark's slow part)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import int8_recovery  # noqa: E402

LABELS = ["a", "b"]
IMAGES = 200


def _one_hot(classes: np.ndarray) -> np.ndarray:
    return np.eye(len(LABELS), dtype=np.float32)[classes]


def _predicting(truth: np.ndarray, wrong: int) -> np.ndarray:
    """Outputs right on every image but the first ``wrong``."""
    predicted = truth.copy()
    predicted[:wrong] = 1 - predicted[:wrong]
    return _one_hot(predicted)


def _cache_arm(cache: Path, arm: str, outputs: dict, epochs: int = 2) -> None:
    stem = cache / f"fine-tune-{arm}-{epochs}-epochs"
    np.savez(stem.with_suffix(".npz"), **outputs)
    stem.with_suffix(".json").write_text(json.dumps({
        "labels": LABELS, "history": {"accuracy": [0.5, 0.6], "loss": [1.0, 0.9]}, "train_s": 120.0,
        "learning_rate": 1e-5, "int8_bytes": 1000, "int8_size_vs_float32_tflite": 0.3, "load": "9 9 9"}))


def test_qat_is_compared_with_float_fine_tuning_paired_on_the_same_images(tmp_path):
    truth = np.arange(IMAGES) % 2
    parent = _predicting(truth, 40)  # parent top-1 0.80
    _cache_arm(tmp_path, "qat", {"truth": truth, "parent": parent, "int8": _predicting(truth, 30)})
    # Measuring nothing (no arm to train) with one arm cached: no comparison yet.
    assert int8_recovery.qat_against_extra_training(None, tmp_path, 2, ()) is None
    _cache_arm(tmp_path, "float", {"truth": truth, "parent": parent, "float": _predicting(truth, 20),
                                   "int8": _predicting(truth, 36)})
    result = int8_recovery.qat_against_extra_training(None, tmp_path, 2, ())
    rows = result["comparisons"]
    assert rows["float fine-tuned (no quantization) vs parent"]["drop_points"] == -10.0  # extra training gained 10
    assert rows["float fine-tuned, plain int8 vs float fine-tuned"]["drop_points"] == 8.0
    assert rows["QAT int8 vs parent"]["drop_points"] == -5.0
    assert rows["QAT int8 vs float fine-tuned"]["drop_points"] == 5.0
    assert rows["QAT int8 vs float fine-tuned, plain int8"]["drop_points"] == -3.0
    assert rows["QAT int8 vs float fine-tuned, plain int8"]["top1_agreement"] == (IMAGES - 6) / IMAGES
    assert all(row["images"] == IMAGES for row in rows.values())
    assert int8_recovery.qat_against_extra_training(None, tmp_path, 3, ()) is None  # other epochs: not cached
    markdown = "\n".join(int8_recovery._qat_markdown(result))
    assert "| QAT int8 | float fine-tuned, plain int8 | 200 | -3.00 (" in markdown
    assert "| float | 2.0 min | 0.600 | 0.300x | 9 9 9 |" in markdown


def test_distilled_qat_is_scored_against_the_parent_and_paired_against_the_label_arms(tmp_path):
    DISTILLED = int8_recovery.DISTILLED  # the arm started from tfmot's ranges
    truth = np.arange(IMAGES) % 2
    parent = _predicting(truth, 40)  # parent top-1 0.80
    distilled = parent.copy()
    distilled[:10] = 1 - distilled[:10]  # disagrees with the parent on 10 photos the parent gets wrong
    assert int8_recovery.distilled_qat(None, tmp_path, DISTILLED, 2, 1, train=False) is None  # nothing cached or trained
    _cache_arm(tmp_path, "qat-distilled", {"truth": truth, "parent": parent, "int8": distilled}, epochs=2)
    record = {"teacher": "the float model's softmax outputs", "temperature": 2.0, "labels_used": False,
              "teacher_train_top1": 0.9}
    stem = tmp_path / "fine-tune-qat-distilled-2-epochs.json"
    stem.write_text(json.dumps(json.loads(stem.read_text()) | {"distillation": record}))
    alone = int8_recovery.distilled_qat(None, tmp_path, DISTILLED, 2, 1, train=False)
    assert list(alone["comparisons"]) == ["parent"]  # the label arms are not cached: only the parent
    _cache_arm(tmp_path, "qat", {"truth": truth, "parent": parent, "int8": _predicting(truth, 30)}, epochs=1)
    _cache_arm(tmp_path, "float", {"truth": truth, "parent": parent, "float": parent, "int8": _predicting(truth, 36)},
               epochs=1)
    np.savez(tmp_path / "plain-int8-outputs.npz", int8=_predicting(truth, 45))  # plain int8 of the parent
    rows = int8_recovery.distilled_qat(None, tmp_path, DISTILLED, 2, 1, train=False)["comparisons"]
    assert rows["plain int8 of the parent"]["drop_points"] == -7.5
    assert rows["parent"]["drop_points"] == -5.0 and rows["parent"]["top1_agreement"] == (IMAGES - 10) / IMAGES
    # both right on 170 photos: the label arm wrong on photos 0-29, the distilled one on 10-39
    assert rows["QAT int8 on labels (1 epoch)"]["drop_points"] == 0.0
    assert rows["QAT int8 on labels (1 epoch)"]["top1_agreement"] == (IMAGES - 20) / IMAGES
    assert rows["float fine-tuned, plain int8 (1 epoch)"]["drop_points"] == -3.0
    markdown = "\n".join(int8_recovery._distilled_markdown(int8_recovery.distilled_qat(None, tmp_path, DISTILLED, 2, 1,
                                                                                        train=False)))
    assert "## QAT distilled from the parent (2 epochs" in markdown and "temperature 2 " in markdown
    assert "| parent | 200 | -5.00 (" in markdown and "agreement with the parent's top-1 on train/ 0.500, 0.600" in markdown
