"""AdaRound-style weight rounding (edgekit.stages.weight_rounding) against the real TFLite converter: the
integers it chooses are the ones the converter writes, and they reconstruct each layer's output better than
round-to-nearest on the images they were chosen on."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_depthwise_net


def _converted_int8(model, calibration: np.ndarray) -> bytes:
    from edgekit.targets.tflite_converter import PreparedModel

    with PreparedModel(model, what="small net", representative=calibration) as prepared:
        return prepared.convert("int8")


def test_adaround_choices_are_what_the_converter_writes_and_beat_nearest_rounding():
    from edgekit.stages.weight_rounding import adaround, converter_grids, grid_mismatches

    model = small_depthwise_net("relu6")
    calibration = np.random.default_rng(0).normal(size=(48, 24, 24, 3)).astype(np.float32)
    float_logits = model.predict(calibration, verbose=0)
    grids = converter_grids(model, _converted_int8(model, calibration))
    assert [grid.kind for grid in grids] == ["Conv2D", "DepthwiseConv2D", "Conv2D", "Dense"]
    for grid in grids:  # the plain conversion is round-to-nearest on the grid read back
        assert np.max(np.abs(grid.folded / grid.step - grid.integers)) <= 0.5 + 1e-6

    nearest = small_depthwise_net("relu6")
    for grid in converter_grids(nearest, _converted_int8(nearest, calibration)):
        grid.write(grid.integers)
    nearest_logits = nearest.predict(calibration, verbose=0)

    report = adaround(model, grids, calibration, images=32, steps=200)
    assert report["layers"] == 4 and report["weights_rounded_other_way"] > 0
    for layer in report["per_layer"]:  # a layer keeps AdaRound's choice only where it reconstructs better
        assert layer["error_vs_nearest"] < 1 if layer["kept_adaround"] else layer["rounded_other_way"] == 0
    assert sum(layer["kept_adaround"] for layer in report["per_layer"]) >= 2
    mismatches = grid_mismatches(model, grids, _converted_int8(model, calibration))
    assert mismatches == {"weights": sum(grid.chosen.size for grid in grids), "integers_differing": 0,
                          "steps_differing": 0}
    rounded_logits = model.predict(calibration, verbose=0)
    assert np.mean((rounded_logits - float_logits) ** 2) < np.mean((nearest_logits - float_logits) ** 2)


def test_a_layer_whose_int8_kernel_cannot_be_found_is_a_conversion_error_naming_the_fix():
    from edgekit.errors import ConversionError
    from edgekit.stages.weight_rounding import converter_grids

    calibration = np.random.default_rng(0).normal(size=(16, 24, 24, 3)).astype(np.float32)
    converted = _converted_int8(small_depthwise_net("relu6"), calibration)
    other = small_depthwise_net("relu6")  # the same net under Keras' next layer names: none of its kernels match
    with pytest.raises(ConversionError, match="matches 0 int8 kernels") as error:
        converter_grids(other, converted)
    assert "--weight-rounding" in error.value.fix


def test_layer_inputs_are_the_sub_models_values_byte_for_byte_with_weights_changed_on_the_way():
    """_LayerInputs runs each layer once instead of a sub-model per layer; the values must not change, also
    across a residual add and after an earlier layer's weights were rewritten (as rounding does)."""
    from edgekit._tf import import_tf, set_seed
    from edgekit.stages.weight_rounding import BATCH, _LayerInputs

    _, tf_keras = import_tf()
    set_seed(0)
    inputs = tf_keras.Input((16, 16, 3))
    x = tf_keras.layers.ReLU(6.0)(tf_keras.layers.BatchNormalization()(
        tf_keras.layers.Conv2D(8, 3, padding="same")(inputs)))
    y = tf_keras.layers.Conv2D(8, 1)(tf_keras.layers.DepthwiseConv2D(3, padding="same")(x))
    x = tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.Dropout(0.5)(tf_keras.layers.Add()([x, y])))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(4)(x))
    images = np.random.default_rng(1).normal(size=(20, 16, 16, 3)).astype(np.float32)
    walker = _LayerInputs(model, images)
    single_input = [layer for layer in model.layers[1:] if not isinstance(layer.input, list)]
    for layer in single_input:
        expected = [np.asarray(tf_keras.Model(model.inputs, layer.input)(images[start:start + BATCH], training=False))
                    for start in range(0, len(images), BATCH)]
        assert np.concatenate(walker.of(layer)).tobytes() == np.concatenate(expected).tobytes(), layer.name
        if layer.get_weights():
            layer.set_weights([weights * 1.1 for weights in layer.get_weights()])

    held = _LayerInputs(model, images)
    held.held = {id(model.layers[1])}  # a layer not yet rounded must not run
    with pytest.raises(RuntimeError, match="before it is rounded"):
        held.of(model.layers[2])
