"""edgekit compress on real digit images: every mode, pruning, clustering, QAT, the accuracy guard, bad input.

Most tests use a small hand-built flat CNN trained for a few seconds on the digits (it reaches
real accuracy, so agreement and accuracy drops mean something); one runs on the shared
MobileNetV2 fixture. Runtime ~3-4 minutes on 2 cores (each conversion is a child process).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import DataError, OutputError, UsageError

from conftest import sha256_tree

OUTLIER_SCALE = 250.0


def _write_cnn_artifact(out: Path, digits_dir: Path, *, outlier_channel: bool = False, sparse_pattern: bool = False):
    """A trained flat tf_keras CNN (Conv/BN/ReLU/DepthwiseConv/Dense, softmax) as a finetune-style artifact.

    ``outlier_channel`` rescales one channel of the last conv by OUTLIER_SCALE (and the Dense row reading
    it by its inverse): the float function is unchanged (ReLU is positively homogeneous), but that
    tensor's int8 range becomes so wide that the other channels quantize to a few levels, a real
    outlier-activation failure the accuracy guard must repair by keeping layers float.
    ``sparse_pattern`` pads the stride-2 stem explicitly (ZeroPadding2D(1) + ``valid``) so the graph follows
    XNNPACK's sparse-inference pattern; the default TF ``same`` stem breaks it.
    """
    from edgekit._tf import import_tf, set_seed
    from edgekit.artifacts import Manifest, Preprocessing, TrainingData, write_artifact
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder
    from edgekit.keras_io import save_keras_model

    _, tf_keras = import_tf()
    set_seed(0)
    layers = tf_keras.layers
    preprocessing = Preprocessing(size=(24, 24), mean=(127.5,) * 3, std=(127.5,) * 3)
    train = scan_image_folder(digits_dir / "train")
    pixels, labels = load_folder_arrays(train, preprocessing)
    inputs = tf_keras.Input((24, 24, 3))
    x = layers.ZeroPadding2D(1)(inputs) if sparse_pattern else inputs
    x = layers.Conv2D(32, 3, strides=2, padding="valid" if sparse_pattern else "same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(64, 1, name="pointwise")(x)
    x = layers.ReLU(None if outlier_channel else 6.0)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(len(train.classes), activation="softmax", name="head")(x)
    model = tf_keras.Model(inputs, outputs)
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(normalize(pixels, preprocessing), labels, epochs=25, batch_size=32, verbose=0)
    if outlier_channel:
        kernel, bias = model.get_layer("pointwise").get_weights()
        kernel[..., 0] *= OUTLIER_SCALE
        bias[0] *= OUTLIER_SCALE
        model.get_layer("pointwise").set_weights([kernel, bias])
        head_kernel, head_bias = model.get_layer("head").get_weights()
        head_kernel[0] /= OUTLIER_SCALE
        model.get_layer("head").set_weights([head_kernel, head_bias])
    manifest = Manifest(format="keras", artifact="model.keras", stage="finetune", labels=train.classes,
                        preprocessing=preprocessing.to_dict(), output={"activation": "softmax"}, backbone="tiny_cnn",
                        training=TrainingData(folder=str(digits_dir / "train")), tfmot_wrap="whole")
    return write_artifact(out, "model.keras", manifest, writer=lambda tmp: save_keras_model(model, tmp))


@pytest.fixture(scope="module")
def cnn_artifact(tmp_path_factory, digits_dir):
    return _write_cnn_artifact(tmp_path_factory.mktemp("cnn") / "float", digits_dir)


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def _check_variant(artifact, *, labels, dtype: str) -> dict:
    """A readable .tflite with static batch 1, embedded labels, and the manifest's recorded tensor types."""
    from edgekit.runtime.metadata import read_tflite_metadata

    detail = _interpreter(artifact.path).get_input_details()[0]
    assert list(detail["shape"]) == [1, *artifact.manifest.input["shape"][1:3], 3]
    assert artifact.manifest.input["shape"][0] == 1 and np.dtype(detail["dtype"]).name == dtype
    assert artifact.manifest.input["dtype"] == dtype
    meta = read_tflite_metadata(artifact.path.read_bytes())
    assert meta["labels"] == list(labels) and meta["preprocessing"] == artifact.manifest.preprocessing
    assert artifact.manifest.parent["sha256"]
    return artifact.manifest.metrics


def test_ptq_modes_write_valid_static_batch1_models_with_metadata(cnn_artifact, tmp_path):
    from edgekit.stages.compress import compress

    artifacts = compress(model=cnn_artifact.directory, out_dir=tmp_path / "out", int8=True, float16=True,
                         int16x8=True, io_dtype="int8")
    by_name = {a.directory.name: a for a in artifacts}
    assert sorted(by_name) == ["float16", "int16x8", "int8"]
    labels = cnn_artifact.manifest.labels
    int8 = _check_variant(by_name["int8"], labels=labels, dtype="int8")
    assert by_name["int8"].manifest.input["scale"] > 0
    assert by_name["int8"].manifest.output["dtype"] == "int8"
    assert int8["size"]["bytes"] < by_name["float16"].manifest.metrics["size"]["bytes"]
    assert int8["validation"]["top1_agreement"] >= 0.9 and int8["accuracy"]["parent_top1"] > 0.5
    low, high = int8["accuracy"]["interval95_points"]
    assert low <= int8["accuracy"]["drop_points"] <= high and int8["accuracy"]["images"] > 400
    assert 0 < int8["size"]["vs_float32_tflite"] < 0.75  # tiny CNN: metadata and graph overhead weigh in
    assert _check_variant(by_name["float16"], labels=labels, dtype="float32")["validation"]["max_abs_diff"] < 1e-2
    assert _check_variant(by_name["int16x8"], labels=labels, dtype="float32")["validation"]["top1_agreement"] >= 0.9


def test_dynamic_range_and_mobilenet_fixture_convert(tiny_float_artifact, tmp_path):
    from edgekit.stages.compress import compress

    (artifact,) = compress(model=tiny_float_artifact.path, out_dir=tmp_path / "out", dynamic=True)
    metrics = _check_variant(artifact, labels=tiny_float_artifact.manifest.labels, dtype="float32")
    assert artifact.directory.name == "dynamic" and metrics["size"]["vs_float32_tflite"] < 0.5


def test_prune_reaches_the_sparsity_in_the_report_and_in_the_tflite_weights(cnn_artifact, tmp_path):
    from edgekit.stages.compress import compress

    (artifact,) = compress(model=cnn_artifact.path, out_dir=tmp_path / "out", prune=0.6, int8=True,
                           fine_tune_epochs=1)
    assert artifact.directory.name == "pruned60-int8"
    report = artifact.manifest.extra["pruning"]["per_layer_type"]
    assert report["conv"]["sparsity"] == pytest.approx(0.6, abs=0.02)
    assert report["dense"]["sparsity"] == pytest.approx(0.6, abs=0.02)
    interpreter = _interpreter(artifact.path)
    # per-channel quantized int8 tensors are the weight constants
    big_int8 = [interpreter.get_tensor(t["index"]) for t in interpreter.get_tensor_details()
                if np.dtype(t["dtype"]) == np.int8 and len(t["quantization_parameters"]["scales"]) > 1
                and np.prod(t["shape"]) >= 2048]
    assert big_int8, "expected the 1x1 conv kernel among the int8 weights"
    assert max(float(np.mean(w == 0)) for w in big_int8) >= 0.55
    size = artifact.manifest.metrics["size"]
    assert size["gzip_bytes"] < size["bytes"]
    # Ratios are against the parent as a float32 .tflite (not the .keras file), raw and gzip alike.
    from edgekit.targets.tflite import export_tflite

    reference = export_tflite(cnn_artifact.path, out_dir=tmp_path / "float32")
    assert size["float32_tflite_bytes"] == pytest.approx(reference.path.stat().st_size, rel=0.002)
    assert size["vs_float32_tflite"] == pytest.approx(size["bytes"] / size["float32_tflite_bytes"], abs=1e-4)
    assert size["gzip_vs_float32_tflite_gzip"] == pytest.approx(
        size["gzip_bytes"] / size["float32_tflite_gzip_bytes"], abs=1e-4)


def test_cluster_leaves_at_most_n_values_per_clustered_layer(cnn_artifact, tmp_path):
    from edgekit.stages.compress import compress

    (artifact,) = compress(model=cnn_artifact.path, out_dir=tmp_path / "out", cluster=8, fine_tune_epochs=1)
    report = artifact.manifest.extra["clustering"]
    clustered = [row for row in report["layers"].values() if row["clustered"]]
    assert len(clustered) == 3  # two Conv2D + the Dense
    assert all(row["unique_values"] <= 8 for row in clustered)
    assert artifact.directory.name == "clustered8-float32"
    # The exported .tflite is what ships: count its weights, where the converter has folded the
    # BatchNorm after the first conv into that conv's kernel (a per-output-channel scale).
    from edgekit.runtime.safety import read_tflite

    interpreter = _interpreter(artifact.path)
    kernels = {t.shape: interpreter.get_tensor(t.index) for t in read_tflite(artifact.path).main.tensors
               if t.is_constant and t.dtype == "FLOAT32" and len(t.shape) in (2, 4)}
    first_conv, pointwise, head = kernels[(32, 3, 3, 3)], kernels[(64, 1, 1, 32)], kernels[(10, 64)]
    assert np.unique(pointwise).size <= 8 and np.unique(head).size <= 8
    # Measured: pointwise 8, head 8; the first conv 236 overall (8 scales x its 32 channels, less repeats)
    # but 8 per output channel: folding keeps the clusters, one scale per channel.
    assert max(np.unique(channel).size for channel in first_conv) <= 8


@pytest.mark.parametrize("distill", [False, True])
def test_qat_produces_an_int8_model(cnn_artifact, tmp_path, distill):
    from edgekit.stages.compress import compress, recorded_activation_ranges

    (artifact,) = compress(model=cnn_artifact.path, out_dir=tmp_path / "out", qat=True, io_dtype="int8",
                           fine_tune_epochs=1, qat_distill=distill)
    assert artifact.directory.name == "qat-int8"
    metrics = _check_variant(artifact, labels=cnn_artifact.manifest.labels, dtype="int8")
    assert metrics["validation"]["top1_agreement"] >= 0.8
    qat = artifact.manifest.extra["qat"]
    assert qat["preserve"] == "none"
    ranges = qat["activation_ranges"]  # started from the calibration images (tests/test_qat_distill.py: how)
    assert ranges["initialised"] > 0 and ranges["left_at_tfmot_start"] == 0 and ranges["from_images"] > 0
    # QAT's int8 keeps the ranges it learned: no estimator is recorded, none narrowed them after training
    assert artifact.manifest.options["activation_ranges"] is None and "activation_ranges" not in artifact.manifest.extra
    assert recorded_activation_ranges(artifact.manifest) is None  # not "minmax", as an older manifest would read
    if distill:  # the manifest says what QAT learnt from (tests/test_qat_distill.py: that it does)
        assert qat["distillation"]["temperature"] == 2.0 and qat["distillation"]["labels_used"] is False
    else:
        assert qat["distillation"] is None


def test_accuracy_guard_keeps_the_worst_layers_float_until_the_drop_is_certified(digits_dir, tmp_path, monkeypatch,
                                                                                   capsys):
    from edgekit.stages.compress import compress

    artifact_in = _write_cnn_artifact(tmp_path / "float", digits_dir, outlier_channel=True)
    (plain,) = compress(model=artifact_in.path, out_dir=tmp_path / "plain", int8=True)
    plain_accuracy = plain.manifest.metrics["accuracy"]
    assert plain_accuracy["drop_points"] > 5.0, "the outlier channel should hurt plain int8"
    assert plain_accuracy["interval95_points"][0] > 0 and not plain_accuracy["source_is_training_data"]
    monkeypatch.delenv("EDGEKIT_QUIET", raising=False)  # the search narrates each try on stderr
    capsys.readouterr()
    (artifact,) = compress(model=artifact_in.path, out_dir=tmp_path / "guarded", int8=True, max_accuracy_drop=3.0)
    guard = artifact.manifest.extra["accuracy_guard"]
    tries = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[guarded int8] try ")]
    assert len(tries) == len(guard["attempts"]) - 1
    for line, attempt in zip(tries, guard["attempts"][1:]):
        assert f"{attempt['kept_float']}/" in line and f"drop {attempt['tuning_drop_points']:.2f} points" in line
        assert f"{attempt['float_weight_bytes'] / 1e3:,.1f} kB more than int8" in line
        assert "left" in line or "last step" in line
    certification, accuracy = guard["certification"], artifact.manifest.metrics["accuracy"]
    assert guard["kept_float_layers"] and guard["attempts"][0]["tuning_drop_points"] > 3.0
    by_count = {attempt["kept_float"]: attempt for attempt in guard["attempts"]}
    # the shortest prefix of the ranking predicted within the limit (bisected), confirmed by the next longer try
    plan = guard["certification_plan"]
    first = plan["candidates_kept_float"][0]
    assert by_count[first]["within"] and not by_count[first - 1]["within"]
    assert all(by_count[count]["within"] for count in plan["candidates_kept_float"])
    looked = [look["kept_float"] for look in guard["certification_looks"]]
    assert looked == plan["candidates_kept_float"][:len(looked)] and len(guard["kept_float_layers"]) == looked[-1]
    assert plan["alpha_per_look"] == 0.05 / plan["looks_at_most"]
    assert guard["certified"] and certification["certified_upper_points"] <= 3.0
    assert certification["certified_upper_points"] >= certification["upper95_points"]  # Bonferroni: never narrower
    # tuning and certification images are disjoint halves of test/, and every number is on the latter
    assert guard["tuning_images"] + certification["images"] == plain_accuracy["images"]
    assert accuracy["images"] == certification["images"] and "certification split" in accuracy["source"]
    assert accuracy["upper95_points"] == certification["upper95_points"]
    assert guard["size_vs_plain_int8"] > 0 and guard["latency_vs_plain_int8"] > 0


@pytest.mark.parametrize("passes, tried, certified", [
    # plain int8 (0) passes and so does 1 layer float: plain int8 is chosen, 1 layer float is its fallback
    (lambda count: count <= 1, [0, 1], [0, 1]),
    # plain int8 passes by chance and 1 does not: plain is not confirmed, so the search goes on as if it had failed
    (lambda count: count == 0 or count >= 16, [0, 1, 2, 4, 8, 16, 32, 12, 14, 15], [16, 32]),
    (lambda count: count >= 16, [0, 1, 2, 4, 8, 16, 32, 12, 14, 15], [16, 32]),
    # 16 passes by chance and 32 does not: 16 is not confirmed, so the search goes on past both
    (lambda count: count == 16 or count >= 60, [0, 1, 2, 4, 8, 16, 32, 64, 70, 48, 56, 60, 58, 59], [60, 64]),
    # the first pass is every layer float: bisection still looks for less, confirmed by the longer pass
    (lambda count: count >= 66, [0, 1, 2, 4, 8, 16, 32, 64, 70, 67, 65, 66], [66, 67]),
    (lambda count: False, [0, 1, 2, 4, 8, 16, 32, 64, 70], [70]),
])
def test_guard_search_certifies_a_confirmed_prefix_then_its_fallback(passes, tried, certified):
    """The prefix lengths the guard tries (plain int8, doubling, one confirmation, bisection) and the at most two it
    certifies: the shortest pass whose next longer try passes too, then that longer one."""
    from edgekit.stages.quantize import _search

    seen = []
    assert _search(70, lambda count: seen.append(count) or {"within": passes(count)}) == certified
    assert seen == tried and len(seen) <= 2 * math.ceil(math.log2(70)) + 2


@pytest.fixture(scope="module")
def random_net():
    """A small untrained conv / depthwise / dense net, 1,600 random inputs and its float outputs on them: its int8
    candidates are scored against those outputs (truth = float's top-1), 600 inputs to tune, 1,000 to certify."""
    from edgekit._tf import import_tf, set_seed

    _, tf_keras = import_tf()
    set_seed(0)
    layers = tf_keras.layers
    inputs = tf_keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 3, strides=2, activation="relu6")(inputs)
    x = layers.DepthwiseConv2D(3, activation="relu6")(x)
    x = layers.Conv2D(16, 1, activation="relu6")(x)
    x = layers.DepthwiseConv2D(3, activation="relu6", padding="same")(x)
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(8, 1)(x))
    model = tf_keras.Model(inputs, layers.Dense(10)(x))
    images = np.random.default_rng(0).normal(size=(1600, 16, 16, 3)).astype(np.float32)
    return model, images, model.predict(images, verbose=0)


def _guard_on_random_net(random_net, bound: float, looks: list[dict]):
    """guarded_int8 on ``random_net`` (tuned on its first 600 inputs, certified on the other 1,000; each
    certification look's scores appended to ``looks``)."""
    from edgekit.child_process import reusing_children
    from edgekit.metrics import accuracy_change
    from edgekit.stages.quantize import guarded_int8
    from edgekit.targets.tflite_converter import PreparedModel, run_tflite

    model, images, reference = random_net
    truth, classes = reference.argmax(1), [str(label) for label in range(10)]

    def scorer(part: slice):
        def score(candidate: bytes) -> dict:
            found = accuracy_change(truth[part], reference[part], run_tflite(candidate, images[part]), classes)
            return dict(found, source="random inputs", source_is_training_data=False)
        return score

    certify = scorer(slice(600, None))
    with reusing_children(), PreparedModel(model, what="small net", representative=images[:32]) as prepared:
        plain = prepared.convert("int8")
        return guarded_int8(prepared, plain=plain, io_dtype="float32", tune=scorer(slice(0, 600)),
                            certify=lambda candidate: looks.append(certify(candidate)) or looks[-1],
                            certification_images=1000, max_drop_points=bound, float32_tflite_bytes=4 * len(plain))


def test_accuracy_guard_certifies_its_fallback_when_the_choice_fails_at_half_the_alpha(random_net):
    """Bound 1 point: 6 of 7 layers float is predicted within the bound and confirmed by 7, but certification
    refuses it (drop 1.00, upper 1.67), so 7 are certified. Both looks use level 0.025 (Bonferroni over the
    two), planned before certification was seen."""
    from edgekit.metrics import drop_upper_bound
    from edgekit.targets.tflite_converter import run_tflite

    looks: list[dict] = []
    chosen, report = _guard_on_random_net(random_net, 1.0, looks)
    plan, checked = report["certification_plan"], report["certification_looks"]
    assert plan == {"candidates_kept_float": [6, 7], "looks_at_most": 2, "alpha_per_look": 0.025, "confidence": 0.95}
    assert [look["kept_float"] for look in checked] == [6, 7] and len(report["kept_float_layers"]) == 7
    for found, look in zip(looks, checked):  # each look's bound at level 0.025, wider than its own 95% bound
        assert look["upper_points"] == drop_upper_bound(found["only_parent_right"], found["only_model_right"],
                                                        found["images"], looks=2) > found["upper95_points"]
    assert checked[0]["upper_points"] > 1.0 >= checked[1]["upper_points"] == report["smallest_certifiable_bound_points"]
    assert report["certified"] and report["certification"]["certified_upper_points"] == checked[1]["upper_points"]
    assert report["certification"]["drop_points"] == looks[1]["drop_points"]
    assert run_tflite(chosen, random_net[1][:8]).shape == (8, 10)


def test_accuracy_guard_refuses_with_the_smallest_bound_its_certification_looks_support(random_net):
    """Bound 2.5: plain int8 passes tuning (drop 1.33, predicted 2.12) and so does 1 layer float (its fallback);
    certification refuses both at level 0.025 (uppers 3.38 and 3.14), so compress fails (exit 6) naming 3.14."""
    from edgekit.errors import AccuracyError
    from edgekit.metrics import drop_upper_bound

    looks: list[dict] = []
    with pytest.raises(AccuracyError) as refused:
        _guard_on_random_net(random_net, 2.5, looks)
    uppers = [drop_upper_bound(look["only_parent_right"], look["only_model_right"], look["images"], looks=2)
              for look in looks]
    assert len(uppers) == 2 and min(uppers) > 2.5
    message = refused.value.one_line()
    assert message.startswith("--max-accuracy-drop 2.5 not certified") and "over 2 look(s)" in message
    assert f"0 float: drop {looks[0]['drop_points']:.2f}, upper {uppers[0]:.2f}; 1 float:" in message
    assert f"smallest bound these images certify is {min(uppers):.2f}" in message
    assert f"--max-accuracy-drop {min(uppers):.2f} or more" in message
    assert refused.value.exit_code == 6
    assert refused.value.smallest_certifiable_bound_points == pytest.approx(min(uppers))  # for API callers


def test_accuracy_guard_with_bias_correction_scores_every_candidate_bias_corrected(digits_dir, tmp_path):
    """--bias-correction with --max-accuracy-drop: plain int8 is corrected on calibration images, and the
    same shifts are applied to each candidate with layers kept float before the tuning split scores it."""
    from edgekit.stages.compress import compress

    artifact_in = _write_cnn_artifact(tmp_path / "float", digits_dir, outlier_channel=True)
    (artifact,) = compress(model=artifact_in.path, out_dir=tmp_path / "guarded", int8=True, max_accuracy_drop=3.0,
                           bias_correction=True)
    guard, correction = artifact.manifest.extra["accuracy_guard"], artifact.manifest.extra["bias_correction"]
    assert artifact.manifest.options["bias_correction"] is True and guard["candidates_bias_corrected"] is True
    assert correction["layers_corrected"] >= 3  # stem conv (BatchNorm folded in), depthwise, pointwise, head
    candidates = guard["attempts"][1:]
    assert candidates, "the outlier channel should make the guard keep layers float"
    applied = [attempt["bias_correction"] for attempt in candidates]
    assert all(one["layers_corrected"] < correction["layers_corrected"] for one in applied)  # kept float: not corrected
    corrected = [one for one in applied if one["layers_corrected"]]  # all but a candidate with every layer float
    assert corrected and all(one["mean_abs_channel_shift_after"] < one["mean_abs_channel_shift_before"]
                             for one in corrected)
    assert guard["certified"] and guard["kept_float_layers"]


@pytest.mark.parametrize("bound", [10.0, 2.2])
def test_accuracy_guard_chooses_plain_int8_only_when_one_layer_float_confirms_it(random_net, bound):
    """Plain int8 passing tuning is prefix 0 of the search: chosen only when 1 layer float passes too (bound 10),
    with that as its fallback and both looks at level 0.025. At bound 2.2 plain int8 passes (predicted 2.12) but 1
    layer float does not (2.33), so the search goes on and chooses a longer, confirmed prefix."""
    looks: list[dict] = []
    chosen, report = _guard_on_random_net(random_net, bound, looks)
    plain, one = report["attempts"][:2]
    plan = report["certification_plan"]
    assert plain["kept_float"] == 0 and plain["within"] and one["kept_float"] == 1
    assert report["ranked_layers"] and plan["looks_at_most"] == 2 and plan["alpha_per_look"] == 0.025
    assert report["certified"]
    if one["within"]:
        assert plan["candidates_kept_float"] == [0, 1] and report["certification_looks"][0]["kept_float"] == 0
        assert bound == 10.0 and len(report["attempts"]) == 2
    else:
        first, fallback = plan["candidates_kept_float"]
        assert bound == 2.2 and 1 < first < fallback
        by_count = {attempt["kept_float"]: attempt for attempt in report["attempts"]}
        assert by_count[first]["within"] and by_count[fallback]["within"] and not by_count[first - 1]["within"]


def test_accuracy_guard_refuses_a_bound_its_images_cannot_certify(cnn_artifact, tmp_path):
    from edgekit.metrics import certifiable_floor
    from edgekit.stages.compress import compress

    images = len(list((Path(cnn_artifact.manifest.training.folder).parent / "test").rglob("*.png")))
    floor = certifiable_floor(images - round(images * 0.4))
    with pytest.raises(UsageError, match=f"certifies only {floor:.2f} points"):
        compress(model=cnn_artifact.path, out_dir=tmp_path / "out", int8=True, max_accuracy_drop=floor / 2)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs, error, words", [
    ({"int8": True, "dynamic": True}, UsageError, "--dynamic"),
    ({"prune": 1.5}, UsageError, "--prune"),
    ({"prune": 0.0}, UsageError, "--prune"),
    ({"cluster": 1}, UsageError, "--cluster"),
    ({"qat": True, "float16": True}, UsageError, "--qat"),
    ({"int8": True, "qat_distill": True}, UsageError, "--qat-distill"),
    ({"float16": True, "io_dtype": "int8"}, UsageError, "--io-dtype"),
    ({"float16": True, "max_accuracy_drop": 1.0}, UsageError, "--max-accuracy-drop"),
    ({"float16": True, "activation_ranges": "mse"}, UsageError, "--activation-ranges"),
    ({"int8": True, "qat": True, "activation_ranges": "minmax"}, UsageError, "--activation-ranges"),
    ({"int8": True, "activation_ranges": "entropy"}, UsageError, "--activation-ranges"),
    ({"float16": True, "weight_rounding": "adaround"}, UsageError, "--weight-rounding"),
    ({"int8": True, "float16": True, "weight_rounding": "adaround"}, UsageError, "--weight-rounding"),
    ({"int8": True, "qat": True, "weight_rounding": "adaround"}, UsageError, "--weight-rounding"),
    ({"int8": True, "weight_rounding": "up"}, UsageError, "--weight-rounding"),
    ({}, UsageError, "nothing to do"),
])
def test_nonsense_options_fail_before_any_work(cnn_artifact, tmp_path, kwargs, error, words):
    from edgekit.stages.compress import compress

    with pytest.raises(error, match=words):
        compress(model=cnn_artifact.path, out_dir=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_bad_folders_are_refused_with_the_option_named(cnn_artifact, digits_dir, tmp_path):
    from edgekit.artifacts import write_json_atomic
    from edgekit.stages.compress import compress

    few = tmp_path / "few"
    for path in sorted((digits_dir / "train" / "3").iterdir())[:4]:
        (few / "3").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, few / "3" / path.name)
    with pytest.raises(DataError, match="--calibration .* only 4 usable images"):
        compress(model=cnn_artifact.path, out_dir=tmp_path / "o1", int8=True, calibration=few)
    (few / "cats").mkdir()
    shutil.copy(next((few / "3").iterdir()), few / "cats" / "x.png")
    with pytest.raises(DataError, match="classes the model does not know: cats"):
        compress(model=cnn_artifact.path, out_dir=tmp_path / "o2", int8=True, calibration=few)
    before = sha256_tree(cnn_artifact.directory)
    with pytest.raises(OutputError, match="--out"):
        compress(model=cnn_artifact.path, out_dir=cnn_artifact.directory, float16=True)
    assert sha256_tree(cnn_artifact.directory) == before
    # a float model whose manifest names no training data: --int8 has nothing to calibrate on
    bare = tmp_path / "bare"
    shutil.copytree(cnn_artifact.directory, bare)
    data = json.loads((bare / "manifest.json").read_text())
    data["training"] = {}
    write_json_atomic(bare / "manifest.json", data)
    with pytest.raises(UsageError, match="--calibration"):
        compress(model=bare, out_dir=tmp_path / "o3", int8=True)


def test_cli_compress_prints_json_summary(cnn_artifact, tmp_path, capsys):
    from edgekit.cli.entry import main

    main(["compress", str(cnn_artifact.path), "--dynamic", "--out", str(tmp_path / "out"), "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["variant"] == "dynamic" and Path(row["path"]).is_file() and row["top1_agreement"] >= 0.9
    low, high = row["top1_drop_interval95"]
    assert low <= row["top1_drop_points"] <= high and row["images"] > 400 and not row["on_training_data"]


def test_cli_compress_int8_defaults_to_percentile_ranges_and_records_what_they_narrowed(cnn_artifact, tmp_path,
                                                                                         capsys):
    from edgekit.artifacts import load_artifact
    from edgekit.cli.entry import main
    from edgekit.stages.compress import recorded_activation_ranges

    main(["compress", str(cnn_artifact.path), "--int8", "--out", str(tmp_path / "out"), "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    manifest = load_artifact(Path(row["path"]).parent).manifest
    ranges = manifest.extra["activation_ranges"]
    assert manifest.options["activation_ranges"] == "percentile" == recorded_activation_ranges(manifest)
    # a manifest written before the option existed records no estimator: its int8 used the converter's min/max
    older = dataclasses.replace(manifest, options={key: value for key, value in manifest.options.items()
                                                   if key != "activation_ranges"})
    assert recorded_activation_ranges(older) == "minmax"
    assert ranges["estimator"] == "percentile" and ranges["narrowed"] > 0 and ranges["images"] >= 10
    assert row["top1_agreement"] >= 0.9
    main(["compress", str(cnn_artifact.path), "--int8", "--activation-ranges", "minmax", "--out",
          str(tmp_path / "minmax"), "--json"])  # the converter's own ranges, as before session 28
    (row,) = json.loads(capsys.readouterr().out)
    manifest = load_artifact(Path(row["path"]).parent).manifest
    assert manifest.options["activation_ranges"] == "minmax" and "activation_ranges" not in manifest.extra


def test_cli_compress_int8_with_adaround_writes_the_chosen_integers(cnn_artifact, tmp_path, capsys):
    from edgekit.artifacts import load_artifact
    from edgekit.cli.entry import main

    main(["compress", str(cnn_artifact.path), "--int8", "--weight-rounding", "adaround", "--out",
          str(tmp_path / "out"), "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    manifest = load_artifact(Path(row["path"]).parent).manifest
    rounding = manifest.extra["weight_rounding"]
    assert manifest.options["weight_rounding"] == "adaround" and rounding["layers"] == 4
    assert rounding["weights_rounded_other_way"] > 0 and rounding["converter_vs_chosen"]["integers_differing"] == 0
    assert row["top1_agreement"] >= 0.9


def test_without_held_out_images_the_drop_is_labelled_as_from_training_data(cnn_artifact, digits_dir, tmp_path):
    from edgekit.artifacts import write_json_atomic
    from edgekit.stages.compress import compress

    photos, model_dir = tmp_path / "photos", tmp_path / "float"
    shutil.copytree(digits_dir / "train", photos)  # a flat class folder: no test/ or val/ beside it
    shutil.copytree(cnn_artifact.directory, model_dir)
    data = json.loads((model_dir / "manifest.json").read_text())
    data["training"]["folder"] = str(photos)
    write_json_atomic(model_dir / "manifest.json", data)
    (artifact,) = compress(model=model_dir, out_dir=tmp_path / "out", int8=True)
    accuracy = artifact.manifest.metrics["accuracy"]
    assert accuracy["source_is_training_data"] and accuracy["source"].startswith("TRAINING images")
    assert any("trained on them" in warning for warning in accuracy["warnings"])
    assert artifact.manifest.metrics["validation"]["training_data"]


def test_cli_compress_table_says_what_the_size_ratio_is_against(cnn_artifact, tmp_path, capsys):
    from edgekit.cli.entry import main

    main(["compress", str(cnn_artifact.path), "--dynamic", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "float32 .tflite" in out and "vs float" not in out


def test_cli_reports_bad_option_with_exit_code(cnn_artifact, tmp_path, capsys):
    from edgekit.cli.entry import main

    with pytest.raises(SystemExit) as exit_info:
        main(["compress", str(cnn_artifact.path), "--cluster", "1", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == UsageError.exit_code
    assert "--cluster" in capsys.readouterr().err
