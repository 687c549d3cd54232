"""`compress --qat --qat-distill`: QAT learns the float parent's softened outputs instead of the labels, so the
int8 model it produces agrees with its parent (the figure compress reports), and the teacher sees the
training images exactly as the student's batches do."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.artifacts import Preprocessing

CLASSES = 4
IMAGENET = Preprocessing(size=(16, 16), mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))


def _tiny_model():
    """A small conv net (conv, depthwise, pointwise, dense softmax) that tfmot's QAT wraps whole."""
    from edgekit._tf import import_tf, set_seed

    _, tf_keras = import_tf()
    set_seed(0)
    layers = tf_keras.layers
    inputs = tf_keras.Input((16, 16, 3))
    x = layers.ReLU(6.0)(layers.Conv2D(8, 3, strides=2, padding="same")(inputs))
    x = layers.ReLU(6.0)(layers.DepthwiseConv2D(3, padding="same")(x))
    x = layers.GlobalAveragePooling2D()(layers.ReLU(6.0)(layers.Conv2D(16, 1)(x)))
    return tf_keras.Model(inputs, layers.Dense(CLASSES, activation="softmax")(x))


def _images(count: int, labels=None):
    """Random uint8 images; class ``c`` (of the first 3) gets its colour channel raised, class 3 none."""
    from pathlib import Path

    from edgekit.stages.tfmot_wrappers import TrainingImages

    rng = np.random.default_rng(0)
    classes = np.arange(count) % CLASSES
    pixels = rng.integers(0, 160, (count, 16, 16, 3))
    for channel in range(3):
        pixels[classes == channel, ..., channel] += 95
    return TrainingImages(pixels.astype(np.uint8), classes if labels is None else labels, IMAGENET, Path("."))


def test_the_teacher_sees_each_image_as_the_students_batches_normalise_it():
    """The review's worry: outputs_in_order and TrainingImages.dataset each normalising. Each normalises the
    uint8 pixels once, with the same mean/std: the teacher's row for an image is the model's output on the
    exact batch input the student is trained on (found through the shuffled batches by an index label)."""
    from edgekit.data import normalize
    from edgekit.stages.tfmot_wrappers import outputs_in_order

    model = _tiny_model()
    images = _images(40, labels=np.arange(40))
    teacher = outputs_in_order(model, images)
    seen = 0
    for batch, index in images.dataset(seed=0, batch_size=16):
        index = np.asarray(index)
        np.testing.assert_array_equal(np.asarray(batch), normalize(images.pixels[index], IMAGENET))
        np.testing.assert_allclose(np.asarray(model(batch, training=False)), teacher[index], atol=1e-5)
        seen += len(index)
    assert seen == 40
    twice = np.asarray(model(normalize(normalize(images.pixels, IMAGENET), IMAGENET), training=False))
    assert not np.allclose(twice, teacher, atol=1e-3)  # the check can tell a doubly normalised teacher apart


def _int8_outputs(models: list, inputs: np.ndarray) -> list[np.ndarray]:
    from edgekit.child_process import reusing_children
    from edgekit.targets.tflite_converter import convert_keras_to_tflite, run_tflite

    with reusing_children():  # one converter child for all of them
        return [run_tflite(convert_keras_to_tflite(model, mode="int8", representative=inputs[:32]), inputs)
                for model in models]


def test_distilled_qat_moves_the_int8_model_towards_the_parent_not_the_labels():
    """A parent trained to tell the colours apart, then QAT on labels that all contradict it: on the labels
    the int8 model is dragged away from its parent; distilled (same seed, epochs, learning rate) it stays
    with the parent, and the report records how it trained. (Learning rate 1e-2 instead of compress's 1e-5,
    so that a few steps on 64 images move the weights.)"""
    from edgekit._tf import import_tf
    from edgekit.data import normalize
    from edgekit.stages.quantize import qat_model
    from edgekit.stages.tfmot_wrappers import DISTILLATION_TEMPERATURE, fine_tune, outputs_in_order

    _, tf_keras = import_tf()
    images = _images(64)
    parent = _tiny_model()
    fine_tune(parent, images, epochs=15, learning_rate=1e-2, seed=0, description="parent")
    teacher = outputs_in_order(parent, images)
    assert np.mean(teacher.argmax(1) == images.labels) >= 0.9  # the parent learnt the colours
    images.labels = (teacher.argmax(1) + 1) % CLASSES
    inputs = normalize(images.pixels, IMAGENET)
    trained, reports = [], {}
    for distill in (False, True):
        student = tf_keras.models.clone_model(parent)
        student.set_weights(parent.get_weights())
        model, reports[distill] = qat_model(student, images, calibration=inputs[:32], epochs=5, tfmot_wrap="whole",
                                            seed=0, distill=distill, learning_rate=1e-2)
        trained.append(model)
    plain, on_labels, distilled = (float(np.mean(outputs.argmax(1) == teacher.argmax(1)))
                                   for outputs in _int8_outputs([parent, *trained], inputs))
    assert distilled >= 0.9 and distilled >= plain - 0.05, (plain, on_labels, distilled)
    assert distilled - on_labels >= 0.3, (plain, on_labels, distilled)
    assert reports[False]["distillation"] is None
    record = reports[True]["distillation"]
    assert record["temperature"] == DISTILLATION_TEMPERATURE and record["labels_used"] is False
    assert record["teacher"].startswith("the float model's softmax outputs") and record["teacher_train_top1"] == 0.0



def _model_with_small_activations(images):
    """A small net (conv, depthwise, pointwise with plain ReLUs, pooling, softmax Dense) trained on ``images``,
    then rescaled so that every activation is 50 times smaller and the outputs are the same (ReLU commutes
    with a positive scale: conv kernels and biases shrink, the Dense kernel grows): far inside tfmot's
    starting ranges of [-6, 6]."""
    from edgekit._tf import import_tf, set_seed
    from edgekit.stages.tfmot_wrappers import fine_tune

    _, tf_keras = import_tf()
    set_seed(0)
    layers = tf_keras.layers
    inputs = tf_keras.Input((16, 16, 3))
    convs = [layers.Conv2D(8, 3, strides=2, padding="same"), layers.DepthwiseConv2D(3, padding="same"),
             layers.Conv2D(16, 1)]
    x = inputs
    for conv in convs:
        x = layers.ReLU()(conv(x))
    head = layers.Dense(CLASSES, activation="softmax")
    model = tf_keras.Model(inputs, head(layers.GlobalAveragePooling2D()(x)))
    fine_tune(model, images, epochs=15, learning_rate=1e-2, seed=0, description="parent")
    convs[0].kernel.assign(convs[0].kernel / 50)
    for conv in convs:
        conv.bias.assign(conv.bias / 50)
    head.kernel.assign(head.kernel * 50)
    return model


def test_qat_starts_its_activation_ranges_from_the_calibration_images():
    """Before QAT trains, each activation range is what its tensor spans in the float model on the calibration
    images (tfmot alone starts them all at [-6, 6]), so the int8 model converted with no training step agrees
    with float where tfmot's start loses most of it; the report says how many ranges, from how many images."""
    from edgekit._tf import import_tf, import_tfmot
    from edgekit.data import normalize
    from edgekit.stages.quantize import initialise_activation_ranges

    _, tf_keras = import_tf()
    quantize_model = import_tfmot().quantization.keras.quantize_model
    images = _images(64)
    model = _model_with_small_activations(images)
    calibration = normalize(images.pixels[:32], IMAGENET)
    untouched, initialised = quantize_model(model), quantize_model(model)
    ranges = initialise_activation_ranges(initialised, model, calibration)
    assert ranges["from_images"] == 32 and ranges["left_at_tfmot_start"] == 0

    def ranges_of(layer) -> dict[str, float]:  # every activation range variable of a (wrapped) layer
        names = {weight.name.split("/")[-1].split(":")[0]: weight for weight in layer.weights}
        return {name: float(np.ravel(weight.numpy())[0]) for name, weight in names.items()
                if name.endswith(("_min", "_max")) and "kernel" not in name}

    wrapped = {getattr(layer, "layer", layer).name: ranges_of(layer) for layer in initialised.layers}
    relu = next(layer for layer in model.layers if isinstance(layer, tf_keras.layers.ReLU))
    dense = model.layers[-1]
    relu_out = np.asarray(tf_keras.Model(model.inputs, relu.output)(calibration))
    features = np.asarray(tf_keras.Model(model.inputs, dense.input)(calibration))
    logits = features @ dense.kernel.numpy() + dense.bias.numpy()
    found = {"input": sorted(next(ranges for name, ranges in wrapped.items() if name.startswith("quantize_layer"))
                             .values()),
             "relu": [wrapped[relu.name][f"output_{end}"] for end in ("min", "max")],
             "logits": [wrapped[dense.name][f"pre_activation_{end}"] for end in ("min", "max")]}
    expected = {"input": [min(calibration.min(), 0), calibration.max()], "relu": [0.0, relu_out.max()],
                "logits": [min(logits.min(), 0), max(logits.max(), 0)]}
    for name, value in expected.items():
        assert found[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert relu_out.max() < 0.6  # far inside tfmot's start
    assert ranges["initialised"] == sum(len(found) for found in wrapped.values()) // 2
    assert ranges["median_width_before"] == 12.0

    inputs = normalize(images.pixels, IMAGENET)
    reference = np.asarray(model(inputs)).argmax(1)
    assert np.mean(reference == images.labels) >= 0.9  # the rescaled model still tells the colours apart
    agreement = [float(np.mean(outputs.argmax(1) == reference))
                 for outputs in _int8_outputs([untouched, initialised], inputs)]
    assert agreement[1] >= 0.9 and agreement[1] - agreement[0] >= 0.3, agreement
