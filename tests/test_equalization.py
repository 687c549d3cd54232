"""Cross-layer equalization: the float function is kept (once ReLU6 is ReLU), the channel ranges of each
equalized pair match afterwards, and branching layers are left alone."""

from __future__ import annotations

import numpy as np
import pytest


def _unequal_net():
    """conv -> BN -> ReLU6 -> pad -> depthwise -> BN -> ReLU6 -> 1x1 conv -> BN -> pool -> logits,
    with BatchNorm scales spread over two decades so the channel ranges are far from equal."""
    from edgekit._tf import import_tf, set_seed

    _, tf_keras = import_tf()
    set_seed(0)
    layers = tf_keras.layers
    inputs = tf_keras.Input((20, 20, 8))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    x = layers.ZeroPadding2D(1)(x)
    x = layers.DepthwiseConv2D(3, use_bias=False)(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    x = layers.BatchNormalization()(layers.Conv2D(8, 1, use_bias=False)(x))
    model = tf_keras.Model(inputs, layers.Dense(5)(layers.GlobalAveragePooling2D()(x)))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            channels = layer.get_weights()[0].shape
            layer.set_weights([10 ** rng.uniform(-1, 1, channels), rng.normal(size=channels),
                               rng.normal(size=channels), rng.uniform(0.5, 2, channels)])
    return model, rng.normal(size=(16, 20, 20, 8)).astype(np.float32)


def test_equalization_keeps_the_float_outputs_and_equalizes_the_channel_ranges():
    from edgekit.stages.equalization import equalize, find_pairs, relu6_to_relu

    model, inputs = _unequal_net()
    original = model.predict(inputs, verbose=0)
    pairs = find_pairs(model)
    assert [(type(model.get_layer(a)).__name__, type(model.get_layer(b)).__name__) for a, _, b, _ in pairs] == [
        ("Conv2D", "DepthwiseConv2D"), ("DepthwiseConv2D", "Conv2D")]
    equalized, report = equalize(model)
    relu = relu6_to_relu(model, {relu for *_, relu in pairs})
    expected = relu.predict(inputs, verbose=0)
    assert np.max(np.abs(equalized.predict(inputs, verbose=0) - expected)) < 1e-4 * np.max(np.abs(expected))
    assert report["pairs"] == 2 and report["relu6_made_relu"] == 2
    assert report["median_channel_range_ratio_before"] > 2
    assert report["median_channel_range_ratio_after"] < 1.01
    assert np.array_equal(model.predict(inputs, verbose=0), original)  # the caller's model is not touched
    assert [layer.max_value for layer in model.layers if type(layer).__name__ == "ReLU"] == [6.0, 6.0]
    assert [layer.max_value for layer in equalized.layers if type(layer).__name__ == "ReLU"] == [None, None]


def test_a_layer_whose_output_branches_is_not_equalized():
    """Rescaling a channel that two layers read would change the one not rescaled."""
    from edgekit._tf import import_tf
    from edgekit.stages.equalization import find_pairs

    _, tf_keras = import_tf()
    layers = tf_keras.layers
    inputs = tf_keras.Input((8, 8, 3))
    shared = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(4, 3, name="branching")(inputs)))
    x = layers.Add()([layers.Conv2D(4, 1)(shared), layers.Conv2D(4, 1)(shared)])
    chained = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(4, 1, name="chained")(x)))
    model = tf_keras.Model(inputs, layers.Conv2D(2, 1, name="last")(chained))
    assert [(first, second) for first, _, second, _ in find_pairs(model)] == [("chained", "last")]


@pytest.mark.parametrize("extra", [{"int8": False, "float16": True}, {"qat": True}, {"float16": True},
                                   {"prune": 0.5}])
def test_equalize_is_refused_outside_post_training_int8_or_int16x8(extra):
    from edgekit.errors import UsageError
    from edgekit.options import CompressOptions

    with pytest.raises(UsageError, match="--equalize changes the float model"):
        CompressOptions(**({"int8": True, "equalize": True} | extra))
    CompressOptions(int16x8=True, equalize=True)  # int16x8 alone is fine


@pytest.mark.slow
def test_compress_equalize_writes_an_int8_of_the_equalized_model_with_its_report(tiny_float_artifact, tmp_path):
    from edgekit.stages.compress import compress

    (plain,) = compress(model=tiny_float_artifact.path, out_dir=tmp_path / "plain", int8=True)
    (equalized,) = compress(model=tiny_float_artifact.path, out_dir=tmp_path / "cle", int8=True, equalize=True)
    report = equalized.manifest.extra["equalization"]
    assert report["pairs"] > 20  # MobileNetV2: stem -> block0, expand -> depthwise -> project in every block
    assert report["median_channel_range_ratio_after"] < report["median_channel_range_ratio_before"]
    assert equalized.manifest.options["equalize"] is True
    assert equalized.path.read_bytes() != plain.path.read_bytes()
    assert abs(equalized.path.stat().st_size - plain.path.stat().st_size) < 0.01 * plain.path.stat().st_size
