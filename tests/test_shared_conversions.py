"""A recipe converts the float model to float32 once: its compress stages' size baselines and its export:float32
are the same conversion, reused by content (architecture + weights), never by name or path."""

from __future__ import annotations

import pytest

from edgekit.targets.tflite_converter import PreparedModel, convert_keras_to_tflite, model_digest, sharing_conversions


@pytest.fixture(scope="module")
def tiny_keras():
    from edgekit._tf import import_tf

    _, keras = import_tf()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(8, 3)(inputs)))
    return keras.Model(inputs, outputs)


def test_a_conversion_of_the_same_content_is_reused_and_a_changed_model_is_converted_again(tiny_keras):
    from edgekit.child_process import reusing_children

    with reusing_children():  # one TensorFlow import in one child for all the conversions below
        _check_reuse(tiny_keras)


def _check_reuse(tiny_keras):
    plain = convert_keras_to_tflite(tiny_keras, what="tiny")  # outside the block: nothing is kept
    with sharing_conversions() as shared:
        with PreparedModel(tiny_keras, what="tiny") as prepared:
            float16, first = prepared.convert_many([("float16", "float32", ()), ("float32", "float32", ())])
        assert shared.reused == 0
        again = convert_keras_to_tflite(tiny_keras, what="tiny")  # what export:float32 does after compress
        assert shared.reused == 1 and again is first and first == plain

        conv = tiny_keras.layers[1]
        kernel, bias = conv.get_weights()
        conv.set_weights([kernel, bias + 0.5])  # same architecture, other weights: e.g. pruned in place
        try:
            changed = convert_keras_to_tflite(tiny_keras, what="tiny")
        finally:
            conv.set_weights([kernel, bias])
        assert shared.reused == 1 and changed != first and float16 != first


def test_the_digest_covers_architecture_and_every_weight(tiny_keras):
    from edgekit._tf import import_tf

    _, keras = import_tf()
    before = model_digest(tiny_keras)
    config = tiny_keras.get_config()
    next(layer for layer in config["layers"] if layer["class_name"] == "Dense")["config"]["activation"] = "linear"
    other = keras.Model.from_config(config)
    other.set_weights(tiny_keras.get_weights())  # same weights, another architecture
    assert model_digest(other) != before
    dense = tiny_keras.layers[-1]
    kernel, bias = dense.get_weights()
    kernel[0, 0] += 1e-6
    dense.set_weights([kernel, bias])
    try:
        assert model_digest(tiny_keras) != before
    finally:
        kernel[0, 0] -= 1e-6
        dense.set_weights([kernel, bias])
    assert model_digest(tiny_keras) == before


def test_the_digest_is_computed_only_for_a_conversion_that_can_be_shared(tiny_keras, monkeypatch):
    from edgekit.targets import tflite_converter

    hashed = []
    monkeypatch.setattr(tflite_converter, "model_digest", lambda model: hashed.append(model) or "content")
    with sharing_conversions(), PreparedModel(tiny_keras, what="tiny", representative=None) as prepared:
        assert prepared._shared_key({"mode": "int8", "io_dtype": "float32", "denylisted_nodes": []}) is None
        assert hashed == []  # an int8-only compress never pays for hashing every weight
        assert prepared._shared_key({"mode": "float16", "io_dtype": "float32", "denylisted_nodes": []}) == (
            "content", "float16", "float32")
        prepared._shared_key({"mode": "float32", "io_dtype": "float32", "denylisted_nodes": []})
        assert len(hashed) == 1  # hashed once, then remembered
