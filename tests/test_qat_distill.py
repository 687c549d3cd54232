"""`compress --qat --qat-distill`: QAT learns the float parent's softened outputs instead of the labels, so the
int8 model it produces agrees with its parent (the figure compress reports), and the teacher sees the
training images exactly as the student's batches do."""

from __future__ import annotations

import numpy as np

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
    trained, reports = [], {}
    for distill in (False, True):
        student = tf_keras.models.clone_model(parent)
        student.set_weights(parent.get_weights())
        model, reports[distill] = qat_model(student, images, epochs=5, tfmot_wrap="whole", seed=0,
                                            distill=distill, learning_rate=1e-2)
        trained.append(model)
    inputs = normalize(images.pixels, IMAGENET)
    plain, on_labels, distilled = (float(np.mean(outputs.argmax(1) == teacher.argmax(1)))
                                   for outputs in _int8_outputs([parent, *trained], inputs))
    assert distilled >= 0.9 and distilled >= plain - 0.05, (plain, on_labels, distilled)
    assert distilled - on_labels >= 0.3, (plain, on_labels, distilled)
    assert reports[False]["distillation"] is None
    record = reports[True]["distillation"]
    assert record["temperature"] == DISTILLATION_TEMPERATURE and record["labels_used"] is False
    assert record["teacher"].startswith("the float model's softmax outputs") and record["teacher_train_top1"] == 0.0

