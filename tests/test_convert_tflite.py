"""The TFLite converter wrapper: static batch 1, child-process isolation, finite-weights check, tensor specs."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import ConversionError


@pytest.fixture(scope="module")
def small_model():
    from edgekit._tf import import_tf, set_seed

    _, tf_keras = import_tf()
    set_seed(0)
    inputs = tf_keras.Input((16, 16, 3))
    x = tf_keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(4, activation="softmax")(x))


def test_a_crashing_converter_child_becomes_conversion_error_naming_the_signal():
    import os

    from edgekit.targets.tflite_converter import _run_child

    # os.abort() really kills the child with SIGABRT, as a converter segfault would.
    with pytest.raises(ConversionError, match=r"TFLite conversion of crash.keras crashed \(Aborted\)") as info:
        _run_child(os.abort, what="TFLite conversion of crash.keras")
    assert "--debug" in info.value.fix


def test_a_failing_converter_child_reports_its_last_error_line():
    from edgekit.targets.tflite_converter import _child_convert, _run_child

    with pytest.raises(ConversionError, match="conversion failed: OSError: SavedModel file does not exist"):
        _run_child(_child_convert, "/nonexistent/saved_model", None, [{"mode": "float32", "io_dtype": "float32"}],
                   what="conversion")


def test_conversions_inside_reusing_children_import_tensorflow_in_one_child_and_a_crash_still_reports(
        small_model, monkeypatch):
    """A recipe converts in three stages; inside reusing_children() they share one converter child (one
    TensorFlow import). A crash there is still the one-line error, and the next conversion gets a fresh child."""
    import os

    from edgekit import child_process
    from edgekit.targets.tflite_converter import _run_child, convert_keras_to_tflite

    pids: list[int] = []

    class RecordingWorker(child_process._Worker):
        def submit(self, function, args):
            future = super().submit(function, args)
            pids.append(self.children[0].pid)
            return future

    monkeypatch.setattr(child_process, "_Worker", RecordingWorker)
    with child_process.reusing_children():
        float32 = convert_keras_to_tflite(small_model, mode="float32")
        float16 = convert_keras_to_tflite(small_model, mode="float16")
        with pytest.raises(ConversionError, match=r"^TFLite conversion of crash.keras crashed \(Aborted\)"):
            _run_child(os.abort, what="TFLite conversion of crash.keras")
        again = convert_keras_to_tflite(small_model, mode="float32")
    assert pids[0] == pids[1] == pids[2]  # both conversions, then the crash, in the one shared child
    assert pids[3] != pids[0]  # after the crash: a fresh child
    assert again == float32 and len(float16) < len(float32)


def test_non_finite_weights_are_refused_before_conversion(small_model):
    from edgekit._tf import import_tf
    from edgekit.targets.tflite_converter import convert_keras_to_tflite

    _, tf_keras = import_tf()
    broken = tf_keras.models.clone_model(small_model)
    kernel, bias = broken.layers[1].get_weights()
    kernel[0, 0, 0, 0] = np.nan
    broken.layers[1].set_weights([kernel, bias])
    with pytest.raises(ConversionError, match="non-finite weights"):
        convert_keras_to_tflite(broken, mode="float32")


def test_int8_conversion_has_static_batch_one_and_quantized_io(small_model, tmp_path):
    from edgekit.targets.tflite_converter import convert_keras_to_tflite, run_tflite, tensor_specs

    rng = np.random.default_rng(0)
    representative = rng.normal(size=(16, 16, 16, 3)).astype(np.float32)
    data = convert_keras_to_tflite(small_model, out_path=tmp_path / "m.tflite", mode="int8",
                                   representative=representative, io_dtype="uint8")
    assert (tmp_path / "m.tflite").read_bytes() == data
    input_spec, output_spec = tensor_specs(data)
    assert input_spec["shape"] == [1, 16, 16, 3] and input_spec["dtype"] == "uint8" and input_spec["scale"] > 0
    assert output_spec["shape"] == [1, 4] and output_spec["dtype"] == "uint8"
    reference = small_model.predict(representative, verbose=0)
    outputs = run_tflite(data, representative)
    assert np.abs(outputs - reference).max() < 0.05
