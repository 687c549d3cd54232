"""`compress --prune-for latency`: options, XNNPACK's sparse pattern, and the check that says why sparse kernels
do not run (issue 19). The fast tests use a tiny hand-built CNN; the slow one runs the whole compress path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgekit.errors import SparsePatternError, UsageError

from test_compress import _write_cnn_artifact


@pytest.mark.parametrize("options, words", [
    ({"prune": 0.7, "prune_for": "speed"}, "--prune-for 'speed': must be 'size' or 'latency'"),
    ({"int8": True, "prune_for": "latency"}, "--prune-for latency needs --prune"),
    ({"prune": 0.5, "prune_for": "latency"}, "--prune 0.5 is too low for --prune-for latency"),
    ({"prune": 0.7, "prune_for": "latency", "qat": True}, "--qat"),
])
def test_latency_pruning_options_are_checked_before_any_work(options, words):
    from edgekit.options import CompressOptions

    with pytest.raises(UsageError, match=words):
        CompressOptions(**options)


def test_latency_pruning_writes_a_sparse_float32_variant_and_the_int8_asked_for():
    from edgekit.options import CompressOptions

    assert CompressOptions(prune=0.7, prune_for="latency").modes() == [("sparse70-float32", "sparse_float32")]
    assert CompressOptions(prune=0.8, prune_for="latency", int8=True).modes() == [
        ("sparse80-float32", "sparse_float32"), ("sparse80-int8", "int8")]
    assert CompressOptions(prune=0.7).modes() == [("pruned70-float32", "float32")]


def test_latency_pruning_fine_tunes_longer_unless_epochs_are_given():
    """Latency pruning's default is its own (MobileNetV2 lost 3.6 points at 4 epochs, up to 1.2 at 8); the other
    training modes keep theirs, and epochs given are used as given, 0 still refused."""
    from edgekit.options import DEFAULT_FINE_TUNE_EPOCHS, LATENCY_PRUNE_FINE_TUNE_EPOCHS, CompressOptions

    assert (LATENCY_PRUNE_FINE_TUNE_EPOCHS, DEFAULT_FINE_TUNE_EPOCHS) == (12, 2)
    assert CompressOptions(prune=0.7, prune_for="latency", int8=True).epochs == 12
    assert [CompressOptions(**mode).epochs for mode in ({"prune": 0.7}, {"cluster": 16}, {"qat": True})] == [2, 2, 2]
    assert CompressOptions(prune=0.7, prune_for="latency", fine_tune_epochs=3).epochs == 3
    assert CompressOptions(prune=0.7, prune_for="latency").fine_tune_epochs is None  # recorded as defaulted
    with pytest.raises(UsageError, match="--fine-tune-epochs must be >= 1"):
        CompressOptions(prune=0.7, prune_for="latency", fine_tune_epochs=0)


def test_a_recipe_stage_key_holds_the_epochs_a_training_variant_trains():
    """A cached sweep built before the default changed must rebuild its latency-pruned variant, not reuse it."""
    from edgekit.recipes.pipeline import keyed_options

    latency = {"prune": 0.7, "prune_for": "latency"}
    assert keyed_options(latency) == keyed_options(latency | {"fine_tune_epochs": 12}) == latency | {"fine_tune_epochs": 12}
    assert keyed_options(latency) != keyed_options(latency | {"fine_tune_epochs": 8})  # a sweep cached at 8 rebuilds
    assert keyed_options({"cluster": 16, "int8": True})["fine_tune_epochs"] == 2
    assert keyed_options({"float16": True}) == {"float16": True}  # post-training stages keep their cached keys


def test_a_recipe_stage_key_holds_the_activation_ranges_an_int8_variant_uses():
    """A sweep cached when min/max ranges were the default must rebuild its int8 variants at percentile."""
    from edgekit.recipes.pipeline import keyed_options

    assert keyed_options({"int8": True}) == keyed_options({"int8": True, "activation_ranges": "percentile"}) == {
        "int8": True, "activation_ranges": "percentile", "weight_rounding": "nearest"}
    assert keyed_options({"int8": True}) != keyed_options({"int8": True, "activation_ranges": "minmax"})
    assert "activation_ranges" not in keyed_options({"int8": True, "qat": True})  # QAT keeps its learned ranges


def test_a_recipe_stage_key_holds_the_weight_rounding_where_it_applies():
    """Should AdaRound become the default, a cache of round-to-nearest int8 variants must rebuild."""
    from edgekit.recipes.pipeline import keyed_options

    assert keyed_options({"int8": True})["weight_rounding"] == "nearest"
    assert keyed_options({"int8": True}) != keyed_options({"int8": True, "weight_rounding": "adaround"})
    for trained_or_mixed in ({"int8": True, "qat": True}, {"int8": True, "prune": 0.5}, {"int8": True, "float16": True}):
        assert "weight_rounding" not in keyed_options(trained_or_mixed)


def test_cli_refuses_a_too_low_sparsity_in_one_line_with_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edgekit", "compress", str(tmp_path / "absent.keras"), "--prune", "0.5",
                           "--prune-for", "latency", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "--prune 0.5 is too low for --prune-for latency" in done.stderr and not (tmp_path / "out").exists()


def test_recipes_accept_prune_for_and_name_a_wrong_value():
    from edgekit.errors import RecipeError
    from edgekit.recipes.schema import parse_recipe

    base = "name: r\ndata: photos\nfinetune: {backbone: mobilenet_v2}\ncompress:\n  - {name: s, prune: 0.7, prune_for: %s}\n"
    assert parse_recipe(base % "latency", source="r.yaml")["compress"][0]["prune_for"] == "latency"
    with pytest.raises(RecipeError, match=r"compress\[0\]\.prune_for"):
        parse_recipe(base % "speed", source="r.yaml")


def test_sweep_builds_the_latency_pruned_variant_and_lists_it_unavailable_for_a_rule_breaking_backbone():
    import yaml

    from edgekit.options import CompressOptions
    from edgekit.recipes.measure import outcome_status
    from edgekit.recipes.pipeline import with_standard_variants
    from edgekit.recipes.schema import parse_recipe

    recipe = with_standard_variants({"name": "r", "data": "photos", "finetune": {"backbone": "mobilenet_v2"}})
    (sparse,) = [v for v in recipe["compress"] if v.get("prune_for") == "latency"]
    assert sparse == {"name": "sparse70-float32", "prune": 0.7, "prune_for": "latency"}
    assert CompressOptions(prune=0.7, prune_for="latency").epochs == 12  # the sweep's variant gets the longer default
    parse_recipe(yaml.safe_dump(recipe), source="sweep.yaml")  # the standard variants are valid recipe entries
    refused = SparsePatternError("--prune-for latency: this model breaks XNNPACK's sparse-inference pattern: x")
    assert outcome_status(refused).startswith("unavailable: --prune-for latency")


@pytest.mark.parametrize("machine, flags, expected, words", [
    ("x86_64", {"sse2", "avx", "avx2"}, False, "AVX"),
    ("x86_64", {"sse2", "sse4_2"}, True, "SSE"),
    ("aarch64", set(), True, "aarch64"),
])
def test_cpu_verdict_follows_xnnpack_rule(machine, flags, expected, words):
    from edgekit.stages.xnnpack_sparse import cpu_sparse_support

    ok, reason = cpu_sparse_support(machine, flags)
    assert ok is expected and words in reason


def _pattern_model(tf_keras, *, padded_stem: bool):
    """Input -> stride-2 3x3 stem -> depthwise 3x3 -> 1x1 conv (75% zeros) -> mean -> dense."""
    layers = tf_keras.layers
    inputs = tf_keras.Input((16, 16, 3), batch_size=1)
    x = layers.ZeroPadding2D(1)(inputs) if padded_stem else inputs
    x = layers.Conv2D(16, 3, strides=2, padding="valid" if padded_stem else "same")(x)
    x = layers.ReLU(6.0)(layers.DepthwiseConv2D(3, padding="same")(x))
    pointwise = layers.Conv2D(64, 1, name="pointwise")
    x = layers.GlobalAveragePooling2D()(layers.ReLU()(pointwise(x)))
    model = tf_keras.Model(inputs, layers.Dense(4, activation="softmax")(x))
    kernel, bias = pointwise.get_weights()
    kernel[np.random.default_rng(0).random(kernel.shape) < 0.75] = 0.0
    pointwise.set_weights([kernel, bias])
    return model


def test_the_check_names_every_reason_sparse_kernels_cannot_run():
    from edgekit._tf import import_tf
    from edgekit.stages.xnnpack_sparse import check_sparse_inference, cpu_sparse_support, describe, policy_violation
    from edgekit.targets.tflite_converter import PreparedModel

    _, tf_keras = import_tf()
    follows, breaks = _pattern_model(tf_keras, padded_stem=True), _pattern_model(tf_keras, padded_stem=False)
    assert policy_violation(follows) is None
    rule = policy_violation(breaks)
    assert "Could not find `Conv2D 3x3` layer with stride 2x2" in rule
    with PreparedModel(follows, what="tiny") as prepared:
        sparse, dense = prepared.convert_many([("sparse_float32", "float32", ()), ("float32", "float32", ())])
    check = check_sparse_inference(sparse, dense, zero_fraction=0.6, rule_broken=rule, measure=False)
    assert check["stored"] == {"densify_ops": 1, "conv1x1": 1, "conv1x1_sparse_stored": 1}
    assert check["used"] is None and not check["expected"]
    assert any("breaks XNNPACK's sparse pattern" in why for why in check["why_not"])
    assert any("only 60% of the 1x1-convolution weights are zero" in why for why in check["why_not"])
    assert any("AVX" in why for why in check["why_not"]) is not cpu_sparse_support()[0]
    assert describe(check).startswith("sparse kernels not expected: ")
    dense_check = check_sparse_inference(dense, dense, zero_fraction=0.75, rule_broken=None, measure=False)
    assert "the converter stored no 1x1 convolution sparse (no DENSIFY ops)" in dense_check["why_not"]


def test_a_speed_up_where_sparse_kernels_cannot_run_is_recorded_as_noise_not_as_use(monkeypatch):
    """CI (2 loaded cores) once timed a tiny sparse model 1.1x faster than its dense twin on an AVX CPU, where
    XNNPACK's code keeps sparse kernels off; the timing confirms a prediction and never overrules one."""
    from edgekit._tf import import_tf
    from edgekit.stages import xnnpack_sparse
    from edgekit.targets.tflite_converter import PreparedModel

    with PreparedModel(_pattern_model(import_tf()[1], padded_stem=True), what="tiny") as prepared:
        (dense,) = prepared.convert_many([("float32", "float32", ())])

    def noisy_signature(sparse, dense):
        return {"speedup": 1.4, "min": 1.2, "max": 1.6}

    monkeypatch.setattr(xnnpack_sparse, "latency_signature", noisy_signature)
    check = xnnpack_sparse.check_sparse_inference(dense, dense, zero_fraction=0.75, rule_broken=None)
    assert check["used"] is False and check["why_not"][0] == "the converter stored no 1x1 convolution sparse (no DENSIFY ops)"
    assert check["latency"]["note"].startswith("x1.40 measured although sparse kernels cannot run here")
    assert xnnpack_sparse.describe(check).startswith("sparse kernels not used (dense/sparse latency x1.40): ")


@pytest.mark.slow  # trains the tiny CNN first (~1 min on 2 loaded cores); the refusal itself is instant
def test_a_model_outside_the_pattern_is_refused_naming_the_rule(tmp_path, digits_dir):
    from edgekit.stages.compress import compress

    artifact = _write_cnn_artifact(tmp_path / "float", digits_dir)
    with pytest.raises(SparsePatternError, match="breaks XNNPACK's sparse-inference pattern: Could not find `Conv2D 3x3`"):
        compress(model=artifact.path, out_dir=tmp_path / "out", prune=0.7, prune_for="latency")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_rule_following_model_is_pruned_stored_sparse_and_checked(tmp_path, digits_dir):
    """The whole path on a small model that follows XNNPACK's pattern: 1x1 convolutions pruned to 75% by tfmot's
    latency policy (the 3x3 stem and the Dense head left dense), stored sparse, timed against the dense twin;
    the verdict matches this CPU (on x86 with AVX: not used, and it says so). No epochs given: latency pruning's
    own default is trained and recorded as defaulted."""
    from edgekit.options import LATENCY_PRUNE_FINE_TUNE_EPOCHS
    from edgekit.stages.compress import compress
    from edgekit.stages.xnnpack_sparse import cpu_sparse_support

    artifact = _write_cnn_artifact(tmp_path / "float", digits_dir, sparse_pattern=True)
    (sparse,) = compress(model=artifact.path, out_dir=tmp_path / "out", prune=0.75, prune_for="latency")
    assert sparse.directory.name == "sparse75-float32"
    options = sparse.manifest.options
    assert (options["fine_tune_epochs"], options["fine_tune_epochs_defaulted"]) == (LATENCY_PRUNE_FINE_TUNE_EPOCHS, True)
    pruning = sparse.manifest.extra["pruning"]
    assert len(pruning["fine_tune"]["loss"]) == LATENCY_PRUNE_FINE_TUNE_EPOCHS
    assert pruning["prune_for"] == "latency" and pruning["pruned_kinds_sparsity"] >= 0.73
    assert pruning["per_layer_type"]["dense"]["sparsity"] < 0.05  # the head is not pruned for latency
    assert pruning["batchnorm"].startswith("moving statistics re-estimated on ") and "conformed" in pruning["batchnorm"]
    assert pruning["distillation"]["teacher"].startswith("the dense parent") and not pruning["distillation"]["labels_used"]
    assert pruning["classifier_refit"]["train_agreement_after"] >= pruning["classifier_refit"]["train_agreement_before"]
    check = sparse.manifest.extra["sparse_inference"]
    assert check["stored"] == {"densify_ops": 1, "conv1x1": 1, "conv1x1_sparse_stored": 1}
    assert check["rule_broken"] is None and check["zero_fraction_1x1"] >= 0.73
    assert len(check["latency"]["sparse_p50_ms"]) == len(check["latency"]["dense_p50_ms"]) == 3
    cpu_ok, cpu_reason = cpu_sparse_support()
    assert check["expected"] is cpu_ok
    if not cpu_ok:
        assert check["used"] is False and cpu_reason in check["why_not"]
    assert sparse.manifest.metrics["accuracy"]["images"] > 100


@pytest.mark.parametrize("total_steps", [2, 7, 32, 64, 100, 313])
def test_the_pruning_schedule_reaches_its_target_within_the_steps_given(total_steps):
    """Issue 19's collapse was not the schedule: tfmot's PolynomialDecay, fitted by ``fit_schedule``, sets the
    final sparsity at a mask update inside the fine-tune (with steps left to recover), for short and long runs."""
    from edgekit._tf import import_tfmot
    from edgekit.stages.prune import fit_schedule

    schedule = fit_schedule(total_steps)
    decay = import_tfmot().sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=0.7, begin_step=schedule.begin_step, end_step=schedule.end_step,
        frequency=schedule.frequency)
    updates = [(step, float(sparsity)) for step in range(total_steps)
               for prune, sparsity in [decay(step)] if bool(prune)]
    assert updates and updates[-1][1] == pytest.approx(0.7)
    assert updates[-1][0] < total_steps - 1 or total_steps < 4  # recovery steps after the last update
    assert len(updates) >= min(total_steps, 5)  # gradual: several mask updates, not one cut


def test_batchnorm_reestimation_sets_the_moving_statistics_to_the_data_seen_through_the_current_weights(tmp_path):
    """After pruning zeroes weights, each BatchNormalization must normalise what the pruned layer now outputs:
    the re-estimated moving mean is the mean of the conv outputs over all images (and the variance close to
    theirs); the layer's frozen state and momentum come back as they were."""
    from edgekit._tf import import_tf
    from edgekit.artifacts import Preprocessing
    from edgekit.stages.tfmot_wrappers import TrainingImages, reestimate_batchnorm

    _, tf_keras = import_tf()
    layers = tf_keras.layers
    inputs = tf_keras.Input((8, 8, 3))
    conv = layers.Conv2D(4, 1, name="pointwise")
    norm = layers.BatchNormalization(momentum=0.99)
    model = tf_keras.Model(inputs, layers.GlobalAveragePooling2D()(norm(conv(inputs))))
    norm.trainable = False
    pixels = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    images = TrainingImages(pixels, np.zeros(64, np.int64), Preprocessing(size=(8, 8), mean=(100.0,) * 3,
                                                                          std=(50.0,) * 3), tmp_path)
    kernel, bias = conv.get_weights()
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.7)] = 0.0  # "pruned"
    conv.set_weights([kernel, bias + 3.0])
    batches = reestimate_batchnorm(model, images, seed=0)
    outputs = conv((pixels.astype(np.float32) - 100.0) / 50.0).numpy().reshape(-1, 4)
    moving_mean, moving_variance = norm.moving_mean.numpy(), norm.moving_variance.numpy()
    assert batches == 2
    np.testing.assert_allclose(moving_mean, outputs.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(moving_variance, outputs.var(axis=0), rtol=0.05)
    assert norm.trainable is False and norm.momentum == 0.99


def _pretrained_elsewhere(tf_keras, tmp_path):
    """A conv -> BatchNormalization -> ReLU -> mean -> softmax model whose moving statistics come from other data
    (as an ImageNet backbone's do on clothing photos), and 64 training images."""
    from edgekit._tf import set_seed
    from edgekit.artifacts import Preprocessing
    from edgekit.stages.tfmot_wrappers import TrainingImages

    set_seed(0)
    layers = tf_keras.layers
    inputs = tf_keras.Input((8, 8, 3))
    norm = layers.BatchNormalization(momentum=0.99)
    x = layers.GlobalAveragePooling2D()(layers.ReLU()(norm(layers.Conv2D(8, 1, name="pointwise")(inputs))))
    model = tf_keras.Model(inputs, layers.Dense(3, activation="softmax")(x))
    norm.trainable = False
    rng = np.random.default_rng(0)
    norm.set_weights([rng.uniform(0.5, 2.0, 8), rng.normal(0, 0.5, 8), rng.normal(0, 1.0, 8), rng.uniform(0.1, 4.0, 8)])
    model.layers[-1].set_weights([rng.normal(0, 3.0, (8, 3)), np.zeros(3)])
    pixels = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    return model, norm, TrainingImages(pixels, np.zeros(64, np.int64),
                                       Preprocessing(size=(8, 8), mean=(100.0,) * 3, std=(50.0,) * 3), tmp_path)


def test_conforming_batchnorm_keeps_the_function_so_reestimation_costs_an_unpruned_model_nothing(tmp_path):
    """Issue 19's 18 points: re-estimating the statistics of a model pretrained on other data changes its outputs
    although no weight was pruned (checked first, so the set-up reproduces it). Conformed to the training
    images first, the model computes the same function, its training-mode (batch statistics) outputs equal its
    inference outputs, and re-estimation leaves the unpruned model's outputs where they were."""
    from edgekit._tf import import_tf
    from edgekit.data import normalize
    from edgekit.stages.tfmot_wrappers import conform_batchnorm, reestimate_batchnorm

    _, tf_keras = import_tf()
    model, norm, images = _pretrained_elsewhere(tf_keras, tmp_path)
    inputs = normalize(images.pixels, images.preprocessing)
    parent = model(inputs, training=False).numpy()
    weights = model.get_weights()
    reestimate_batchnorm(model, images, seed=0)
    assert np.abs(model(inputs, training=False).numpy() - parent).max() > 0.1  # the unconformed loss
    model.set_weights(weights)
    assert conform_batchnorm(model, images) == 1
    np.testing.assert_allclose(model(inputs, training=False).numpy(), parent, atol=1e-5)
    norm.trainable = True
    np.testing.assert_allclose(model(inputs, training=True).numpy(), parent, atol=1e-4)
    norm.trainable = False
    reestimate_batchnorm(model, images, seed=0)
    assert np.abs(model(inputs, training=False).numpy() - parent).max() < 0.02


def test_the_classifier_refit_follows_the_features_reestimation_changed_and_leaves_the_rest_frozen(tmp_path):
    """After re-estimation the classifier reads features it was not trained on. Here: conv -> BatchNormalization
    (statistics from other data) -> mean -> softmax, re-estimated without conforming, so the parent's top-1
    changes on a quarter of the images (checked first). The Dense layer alone, refit to the parent's outputs
    on cached features, brings the model back to the parent; every other weight stays as it was."""
    from dataclasses import replace

    from edgekit._tf import import_tf, set_seed
    from edgekit.artifacts import Preprocessing
    from edgekit.stages.tfmot_wrappers import (DISTILLATION_TEMPERATURE, TrainingImages, distillation_loss,
                                               outputs_in_order, reestimate_batchnorm, refit_classifier)

    _, tf_keras = import_tf()
    set_seed(0)
    layers = tf_keras.layers
    inputs = tf_keras.Input((8, 8, 3))
    norm = layers.BatchNormalization()
    features = layers.GlobalAveragePooling2D()(norm(layers.Conv2D(8, 1)(inputs)))
    model = tf_keras.Model(inputs, layers.Dense(3, activation="softmax")(features))
    norm.trainable = False
    rng = np.random.default_rng(0)
    norm.set_weights([rng.uniform(0.5, 2.0, 8), rng.normal(0, 0.5, 8), rng.normal(0, 1.0, 8), rng.uniform(0.1, 4.0, 8)])
    model.layers[-1].set_weights([rng.normal(0, 3.0, (8, 3)), np.zeros(3)])
    tint = rng.integers(0, 192, (64, 1, 1, 3))  # so the parent's top-1 varies from image to image
    pixels = np.clip(rng.integers(0, 256, (64, 8, 8, 3)) // 4 + tint, 0, 255).astype(np.uint8)
    images = TrainingImages(pixels, np.zeros(64, np.int64), Preprocessing(size=(8, 8), mean=(100.0,) * 3,
                                                                          std=(50.0,) * 3), tmp_path)
    targets = replace(images, labels=outputs_in_order(model, images))
    reestimate_batchnorm(model, images, seed=0)
    moved = outputs_in_order(model, images)
    agreement_moved = float(np.mean(moved.argmax(1) == targets.labels.argmax(1)))
    assert agreement_moved < 0.85
    backbone = [w.copy() for layer in model.layers[:-1] for w in layer.get_weights()]
    record = refit_classifier(model, targets, distillation_loss(DISTILLATION_TEMPERATURE), seed=0, epochs=100,
                              learning_rate=1e-2)
    refit = outputs_in_order(model, images)
    assert record["train_agreement_before"] == pytest.approx(agreement_moved, abs=1e-4)
    assert record["train_agreement_after"] >= 0.95
    assert float(np.mean(refit.argmax(1) == targets.labels.argmax(1))) == pytest.approx(record["train_agreement_after"], abs=1e-4)
    assert np.abs(refit - targets.labels).mean() < 0.2 * np.abs(moved - targets.labels).mean()
    for before, after in zip(backbone, [w for layer in model.layers[:-1] for w in layer.get_weights()]):
        np.testing.assert_array_equal(before, after)
    assert record["layer"] == model.layers[-1].name and len(record["loss"]) == 100


def test_distillation_loss_is_the_softened_cross_entropy_and_rewards_the_teachers_second_choices():
    """T^2 * CE(softmax(log t / T), softmax(log s / T)) per image; among students with the teacher's top-1 it is
    lowest for the one that also matches the teacher's second choices (which bare labels cannot teach)."""
    from edgekit.stages.tfmot_wrappers import distillation_loss

    teacher = np.array([[0.7, 0.2, 0.1]], np.float32)
    loss = distillation_loss(2.0)
    soft = np.exp(np.log(teacher) / 2) / np.exp(np.log(teacher) / 2).sum()
    student = np.array([[0.6, 0.3, 0.1]], np.float32)
    soft_student = np.exp(np.log(student) / 2) / np.exp(np.log(student) / 2).sum()
    expected = -4.0 * float((soft * np.log(soft_student)).sum())
    assert float(loss(teacher, student)[0]) == pytest.approx(expected, rel=1e-5)
    matching, confident = float(loss(teacher, teacher)[0]), float(loss(teacher, np.array([[0.98, 0.01, 0.01]], np.float32))[0])
    assert matching < float(loss(teacher, student)[0]) and matching < confident


def _tiny_pattern_model(tf_keras, classes: int):
    """16 px input, XNNPACK's pattern (padded stride-2 stem, depthwise, 1x1 conv, mean, dense), batch-free."""
    layers = tf_keras.layers
    inputs = tf_keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="valid")(layers.ZeroPadding2D(1)(inputs))
    x = layers.ReLU(6.0)(layers.DepthwiseConv2D(3, padding="same")(layers.ReLU(6.0)(x)))
    x = layers.GlobalAveragePooling2D()(layers.ReLU(6.0)(layers.Conv2D(32, 1, name="pointwise")(x)))
    return tf_keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


def test_latency_pruning_learns_from_the_dense_parent_not_the_labels(tmp_path):
    """Latency pruning distils: the fine-tune's targets are the dense parent's outputs. The labels here all
    contradict the parent, so a fine-tune on labels would score ~0 on its training metric, while agreement
    with the parent (what distillation measures) stays high; the report records the teacher and temperature."""
    from edgekit._tf import import_tf, set_seed
    from edgekit.artifacts import Preprocessing
    from edgekit.stages.prune import prune_model
    from edgekit.stages.tfmot_wrappers import (CLASSIFIER_REFIT_EPOCHS, DISTILLATION_TEMPERATURE, TrainingImages,
                                               outputs_in_order)

    _, tf_keras = import_tf()
    set_seed(0)
    model = _tiny_pattern_model(tf_keras, classes=4)
    pixels = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    images = TrainingImages(pixels, np.zeros(64, np.int64), Preprocessing(size=(16, 16), mean=(127.5,) * 3,
                                                                          std=(127.5,) * 3), tmp_path)
    parent_top1 = outputs_in_order(model, images).argmax(1)
    images.labels = (parent_top1 + 1) % 4  # every label disagrees with the parent
    _, report = prune_model(model, images, sparsity=0.75, epochs=2, tfmot_wrap="whole", seed=0, prune_for="latency")
    assert report["pruned_kinds_sparsity"] >= 0.73
    assert min(report["fine_tune"]["accuracy"]) > 0.5  # agreement with the parent, not with the labels
    assert report["distillation"]["temperature"] == DISTILLATION_TEMPERATURE
    assert report["distillation"]["teacher_train_top1"] == 0.0
    views = report["distillation"]["augmentation"]  # the fine-tune's targets: the parent on each augmented view
    assert views["seed"] == 0 and views["transforms"]["flip_left_right"] and views["transforms"]["crop_min_side"] < 1
    refit = report["classifier_refit"]  # last, on the features re-estimation left
    assert refit["epochs"] == CLASSIFIER_REFIT_EPOCHS and refit["train_agreement_after"] >= refit["train_agreement_before"]


def test_consistent_distillation_targets_are_the_teacher_on_each_augmented_view_drawn_from_the_seed(tmp_path):
    """Beyer et al.'s consistent teaching: every batch is a new view of the training images (not the images
    themselves), its targets are the frozen teacher's outputs on that very view (so not the fixed outputs on
    the unaugmented images), the same seed gives the same views, and the next epoch gives new ones."""
    from edgekit._tf import import_tf, set_seed
    from edgekit.artifacts import Preprocessing
    from edgekit.data import normalize
    from edgekit.stages.tfmot_wrappers import ConsistentDistillation, TrainingImages, frozen_copy, outputs_in_order

    _, tf_keras = import_tf()
    set_seed(0)
    model = _tiny_pattern_model(tf_keras, classes=4)
    rng = np.random.default_rng(0)
    pixels = np.clip(rng.integers(0, 256, (64, 16, 16, 3)) // 2 + rng.integers(0, 128, (64, 1, 16, 3)), 0, 255)
    images = TrainingImages(pixels.astype(np.uint8), np.arange(64),  # labels: which image each row comes from
                            Preprocessing(size=(16, 16), mean=(127.5,) * 3, std=(127.5,) * 3), tmp_path)
    head = model.layers[-1]
    head.set_weights([w * 20 for w in head.get_weights()])  # a decisive teacher: outputs differ between views
    teacher = frozen_copy(model)
    head.set_weights([w * 0 for w in head.get_weights()])  # the student moves; its frozen copy does not
    distillation = ConsistentDistillation(teacher, images)
    plain, fixed = normalize(images.pixels, images.preprocessing), outputs_in_order(teacher, images)

    def epoch(dataset):
        batches = [(np.asarray(x), np.asarray(y)) for x, y in dataset]
        return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])

    dataset = distillation.dataset(seed=3)
    views, targets = epoch(dataset)
    _, source = epoch(images.dataset(seed=3))  # the same shuffle, unaugmented: each row's image
    assert views.shape == plain.shape and sorted(source) == list(range(64))
    np.testing.assert_allclose(targets, np.asarray(teacher(views, training=False)), atol=1e-5)
    assert np.abs(views - plain[source]).max(axis=(1, 2, 3)).min() > 0.05  # every row a view, not the image
    moved = np.abs(targets - fixed[source]).sum(axis=1)  # the teacher's answer moved with the view
    assert np.median(moved) > 0.05, moved
    again, _ = epoch(distillation.dataset(seed=3))
    np.testing.assert_array_equal(views, again)
    next_views, _ = epoch(dataset)
    assert np.abs(next_views - views).max() > 0.05
