"""The paired accuracy-change statistics every stage reports (edgekit.metrics.accuracy_change): pure numpy."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.metrics import accuracy_change, certifiable_floor, drop_upper_bound

CLASSES = ["a", "b", "c", "d"]


def _pair(rng, n: int, p_parent_only: float, p_model_only: float, parent_accuracy: float = 0.85):
    """Labels and one-hot outputs of a parent and a model whose right/wrong pattern differs at the given rates."""
    truth = rng.integers(0, len(CLASSES), n)
    wrong = (truth + 1) % len(CLASSES)
    u = rng.random(n)
    both_right = u < parent_accuracy - p_parent_only
    parent_only = (u >= parent_accuracy - p_parent_only) & (u < parent_accuracy)
    model_only = (u >= parent_accuracy) & (u < parent_accuracy + p_model_only)
    eye = np.eye(len(CLASSES))
    parent = eye[np.where(both_right | parent_only, truth, wrong)]
    model = eye[np.where(both_right | model_only, truth, wrong)]
    return truth, parent, model


def test_interval_covers_the_true_drop_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_drop = (0.06 - 0.03) * 100
    hits = upper_hits = 0
    trials = 1500
    for _ in range(trials):
        change = accuracy_change(*_pair(rng, 300, 0.06, 0.03), CLASSES)
        low, high = change["interval95_points"]
        hits += low <= true_drop <= high
        upper_hits += true_drop <= change["upper95_points"]
    assert 0.93 <= hits / trials <= 0.975
    assert 0.93 <= upper_hits / trials <= 0.975


def test_no_disagreement_on_few_images_is_not_certainty():
    truth, parent, _ = _pair(np.random.default_rng(1), 30, 0.0, 0.0)
    change = accuracy_change(truth, parent, parent, CLASSES, bound=1.0)
    assert change["drop_points"] == 0.0 and change["top1_agreement"] == 1.0
    assert change["upper95_points"] > 5.0, "30 identical answers cannot certify a few points"
    assert change["warnings"] and "cannot resolve a 1-point drop" in change["warnings"][0]


def test_the_issue_example_resolution_1000_images_5_percent_disagreement():
    # about 1,000 images and 5% disagreement: even no net loss certifies only about 1.2 points
    assert certifiable_floor(1000, 50) == pytest.approx(1.2, abs=0.05)
    assert certifiable_floor(4000, 200) < certifiable_floor(1000, 50) / 1.9  # narrows as 1/sqrt(n)
    assert drop_upper_bound(30, 0, 1000) > drop_upper_bound(15, 15, 1000) > drop_upper_bound(0, 30, 1000)


def test_worst_class_recall_change_shows_a_loss_the_top1_drop_hides():
    # a model that trades one class for another: same top-1, one class's recall falls from 0.33 to 0
    truth = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    parent_pred = np.array([0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    model_pred = np.array([1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    eye = np.eye(4)
    change = accuracy_change(truth, eye[parent_pred], eye[model_pred], CLASSES)
    assert change["drop_points"] == 0.0
    worst = change["worst_class_recall_drop"]
    assert worst["class"] == "a" and worst["parent_recall"] == pytest.approx(0.3333, abs=1e-3)
    assert worst["recall"] == 0.0 and worst["points"] == pytest.approx(33.33, abs=0.01)
    assert change["macro_f1_drop_points"] > 0


def test_sign_convention_positive_is_a_loss():
    truth, parent, model = _pair(np.random.default_rng(2), 2000, 0.10, 0.0)
    change = accuracy_change(truth, parent, model, CLASSES)
    assert change["drop_points"] > 5 and change["interval95_points"][0] > 0
    assert change["parent_top1"] > change["top1"]
    better = accuracy_change(truth, model, parent, CLASSES)
    assert better["drop_points"] == -change["drop_points"] and better["interval95_points"][1] < 0


def test_a_search_that_looks_many_times_gets_a_wider_bound():
    """The guard checks up to ``looks`` candidates on one tuning split; each bound widens to level 0.05/looks."""
    single, searched = drop_upper_bound(10, 5, 700), drop_upper_bound(10, 5, 700, looks=13)
    assert searched > single
    # z(1 - 0.05/13) = 2.66 against 1.645: the margin above the observed drop grows by that ratio
    observed = (10 - 5) / 700 * 100
    assert 1.5 < (searched - observed) / (single - observed) < 1.75


def test_a_bound_predicted_for_another_set_size_is_the_bound_that_set_would_give():
    """The guard predicts certification's bound from tuning's rates: same rates on 1.5x the images, same bound."""
    predicted = drop_upper_bound(24, 22, 976, looks=2, at_images=1464)
    assert predicted == pytest.approx(drop_upper_bound(36, 33, 1464, looks=2), abs=0.03)
    assert drop_upper_bound(24, 22, 976, at_images=976) == drop_upper_bound(24, 22, 976)
    assert predicted < drop_upper_bound(24, 22, 976, looks=2)  # more images, narrower


def test_the_guard_accepts_what_certification_will_pass_where_the_widened_tuning_bound_refused():
    """MobileNetV2 224 with the ranking's first 16 layers float, on the guard's 976 tuning images: 21 images
    only the parent gets right, 20 only the candidate (drop 0.10 points). The old rule's tuning bound, widened
    for 15 looks, was 1.92 > 1.5 and kept 65 layers float; what certification on 1,464 images will need at two
    looks (0.025 each) is 1.18, within 1.5."""
    assert drop_upper_bound(21, 20, 976, looks=15) == pytest.approx(1.92, abs=0.01)
    assert drop_upper_bound(21, 20, 976, looks=2, at_images=1464) == pytest.approx(1.18, abs=0.01)
