"""What pruning, clustering and QAT share: training images, tfmot wrapping, and the short fine-tune.

Wrapping follows the backbone catalog's ``tfmot_wrap``: ``whole`` wraps the whole (flat) model in
one call; ``selective`` wraps only Conv2D / DepthwiseConv2D / Dense via ``clone_model`` because
MobileNetV3/EfficientNet-style graphs hold Rescaling/TFOpLambda layers that tfmot refuses
(DESIGN.md). BatchNormalization stays frozen during the fine-tunes that keep most weights: a few
epochs on a small folder would otherwise drag its statistics away from what the backbone learned.
Latency pruning is the exception (:mod:`edgekit.stages.prune`): it cuts so much that the old
statistics no longer fit, so they are conformed to the training images first (:func:`conform_batchnorm`)
and re-estimated after the cut (:func:`reestimate_batchnorm`), and the classifier is refit to the features
that leaves (:func:`refit_classifier`). It also distils consistently (:class:`ConsistentDistillation`): the
dense parent is run on the same randomly augmented batch the pruned model trains on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgekit.artifacts import Preprocessing
from edgekit.data import Augmentation
from edgekit.errors import UsageError

BATCH_SIZE = 32
DISTILLATION_TEMPERATURE = 2.0  # softens the teacher's outputs so its second choices teach too (Hinton et al.)
# Consistent distillation's views: finetune's own augmentation (flip, crops down to 85% of each side, brightness,
# contrast). Crops down to 60% were measured worse on MobileNetV2 224 at 4 epochs (README, issue 19).
VIEWS = Augmentation()
CLASSIFIER_REFIT_EPOCHS = 10  # on cached features: seconds, even for MobileNetV2's 1,280 x 10 head
CLASSIFIER_REFIT_LEARNING_RATE = 1e-3
# tfmot 0.8.1 prunes and clusters Conv2D/Dense kernels but leaves depthwise kernels untouched (measured).
SPARSE_KINDS = ("conv", "dense")


@dataclass
class TrainingImages:
    """Training pixels (uint8, at the model's input size) and labels, normalised batch by batch."""

    pixels: np.ndarray
    labels: np.ndarray
    preprocessing: Preprocessing
    source: Path

    def steps_per_epoch(self, batch_size: int = BATCH_SIZE) -> int:
        return max(1, -(-len(self.labels) // batch_size))

    def in_order(self, batch_size: int = BATCH_SIZE):
        """The images in their order, normalised exactly as :meth:`dataset` normalises them, batch by batch:
        for the inference passes (teacher outputs, BatchNormalization statistics, classifier features)."""
        from edgekit.data import normalize

        for start in range(0, len(self.labels), batch_size):
            yield normalize(self.pixels[start:start + batch_size], self.preprocessing)

    def dataset(self, *, seed: int, batch_size: int = BATCH_SIZE, augmentation: Augmentation | None = None):
        """Shuffled (image, label) batches, a new order each epoch; with ``augmentation``, each batch is also
        augmented, its randomness drawn from ``seed``: the same sequence for the same seed, new views each epoch."""
        from edgekit._tf import import_tf

        tf, _ = import_tf()
        mean = tf.constant(self.preprocessing.mean, tf.float32)
        std = tf.constant(self.preprocessing.std, tf.float32)
        data = tf.data.Dataset.from_tensor_slices((self.pixels, self.labels))
        data = data.shuffle(len(self.labels), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
        if augmentation is not None:
            def augment(pixels, draw):
                return augmentation.apply(pixels, np.random.default_rng(draw.tolist()))

            draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)  # one per batch, >= 0
            data = tf.data.Dataset.zip((data, draws)).map(
                lambda batch, draw: (tf.ensure_shape(tf.numpy_function(augment, [batch[0], draw], tf.uint8),
                                                     batch[0].shape), batch[1]))
        return data.map(lambda x, y: ((tf.cast(x, tf.float32) - mean) / std, y)).prefetch(2)


def load_training_images(folder: Path, labels: list[str], preprocessing: Preprocessing) -> TrainingImages:
    from edgekit.data import load_folder_arrays, scan_image_folder

    images = scan_image_folder(folder, classes=labels)
    pixels, truth = load_folder_arrays(images, preprocessing)
    return TrainingImages(pixels=pixels, labels=truth, preprocessing=preprocessing, source=Path(folder))


def layer_kind(layer) -> str | None:
    """'depthwise', 'conv' or 'dense' for the layers compression reports on, else None."""
    _, tf_keras = _tf()
    if isinstance(layer, tf_keras.layers.DepthwiseConv2D):  # subclass of Conv2D: test it first
        return "depthwise"
    if isinstance(layer, tf_keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, tf_keras.layers.Dense):
        return "dense"
    return None


def main_kernel(layer) -> np.ndarray:
    """The weight tensor pruning/clustering acts on (depthwise kernel or kernel)."""
    return np.asarray((layer.depthwise_kernel if layer_kind(layer) == "depthwise" else layer.kernel).numpy())


def _tf():
    from edgekit._tf import import_tf

    return import_tf()


def _batchnorm_layers(model) -> list:
    """``model``'s BatchNormalization layers, in ``model.layers`` order."""
    _, tf_keras = _tf()
    return [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]


def freeze_batchnorm(model) -> None:
    """Everything trainable except BatchNormalization (kept in inference mode)."""
    model.trainable = True
    for layer in _batchnorm_layers(model):
        layer.trainable = False


def batchnorm_input_statistics(model, images: TrainingImages, batch_size: int = BATCH_SIZE) -> list[tuple]:
    """Per-channel (mean, variance) of what each BatchNormalization of ``model`` receives over all ``images``,
    inference mode, in ``model.layers`` order (the variance is the population's: within plus between batches)."""
    tf, tf_keras = _tf()
    norms = _batchnorm_layers(model)
    probe = tf_keras.Model(model.inputs, [layer.input for layer in norms])
    counts, means, variances = [], [], []
    for batch in images.in_order(batch_size):
        outputs = probe(batch, training=False)
        outputs = outputs if isinstance(outputs, list) else [outputs]  # a one-output model returns a bare tensor
        moments = [tf.nn.moments(x, axes=list(range(len(x.shape) - 1))) for x in outputs]
        counts.append(len(batch))
        means.append([np.asarray(mean, np.float64) for mean, _ in moments])
        variances.append([np.asarray(variance, np.float64) for _, variance in moments])
    weights = np.asarray(counts, np.float64) / sum(counts)
    statistics = []
    for index in range(len(norms)):
        batch_means = np.stack([row[index] for row in means])
        mean = weights @ batch_means
        variance = weights @ np.stack([row[index] for row in variances]) + weights @ (batch_means - mean) ** 2
        statistics.append((mean, variance))
    return statistics


def conform_batchnorm(model, images: TrainingImages) -> int:
    """Re-express every BatchNormalization with the statistics of ``images`` as moving statistics, folding the
    difference into its scale and offset so that the model computes exactly the same function; return how
    many layers changed.

    A backbone pretrained on another data set (ImageNet) keeps that data's moving statistics, and its head
    was fit to features normalised with them. Training-mode BatchNormalization and :func:`reestimate_batchnorm`
    normalise with the statistics of the images at hand instead, which changes every feature the head reads
    (issue 19: re-estimating on clothing-small cost the *unpruned* MobileNetV2 18 points). Conformed first,
    the two normalisations agree, so re-estimation only tracks what pruning itself moves.
    """
    norms = _batchnorm_layers(model)
    changed = 0
    for layer, (mean, variance) in zip(norms, batchnorm_input_statistics(model, images)):
        if not (layer.scale and layer.center):
            continue  # nothing to fold the difference into
        gamma, beta = layer.gamma.numpy().astype(np.float64), layer.beta.numpy().astype(np.float64)
        old_mean = layer.moving_mean.numpy().astype(np.float64)
        old_std = np.sqrt(layer.moving_variance.numpy().astype(np.float64) + layer.epsilon)
        new_std = np.sqrt(variance + layer.epsilon)
        dtype = layer.gamma.dtype.as_numpy_dtype
        layer.gamma.assign((gamma * new_std / old_std).astype(dtype))
        layer.beta.assign((beta + gamma * (mean - old_mean) / old_std).astype(dtype))
        layer.moving_mean.assign(mean.astype(dtype))
        layer.moving_variance.assign(variance.astype(dtype))
        changed += 1
    return changed


def reestimate_batchnorm(model, images: TrainingImages, *, seed: int, batch_size: int = BATCH_SIZE) -> int:
    """Set every BatchNormalization's moving mean/variance to the average of its batch statistics over
    ``images``, computed with the model's current weights; return the number of batches.

    Pruning for latency zeroes most 1x1-convolution weights, which moves the mean and variance of what
    each following BatchNormalization sees, so the statistics must follow the cut (issue 19: MobileNetV2
    with 70% of its 1x1 weights cut at once, no fine-tune: top-1 0.196 with the old statistics, 0.242
    conformed then re-estimated). Conform first (:func:`conform_batchnorm`), or this also replaces the
    pretraining data's statistics the head was fit to.
    """
    norms = _batchnorm_layers(model)
    saved = [(layer.trainable, layer.momentum) for layer in norms]
    batches = 0
    try:
        for layer in norms:
            layer.trainable = True  # a frozen tf_keras BatchNormalization ignores training=True
        for batch, _ in images.dataset(seed=seed, batch_size=batch_size):
            for layer in norms:
                layer.momentum = batches / (batches + 1)  # moving = running mean of the batch statistics
            model(batch, training=True)
            batches += 1
    finally:
        for layer, (trainable, momentum) in zip(norms, saved):
            layer.trainable, layer.momentum = trainable, momentum
    return batches


def wrap_model(model, *, wrap_layer: Callable, wrap_whole: Callable, tfmot_wrap: str, what: str,
               kinds: tuple[str, ...] = ("conv", "depthwise", "dense")):
    """Apply a tfmot wrapper to the whole model or, for ``selective`` backbones, to layers of ``kinds`` only."""
    _, tf_keras = _tf()
    freeze_batchnorm(model)
    try:
        if tfmot_wrap == "selective":
            # Returning the original layer objects keeps their trained weights.
            return tf_keras.models.clone_model(
                model, clone_function=lambda layer: wrap_layer(layer) if layer_kind(layer) in kinds else layer)
        return wrap_whole(model)
    except (ValueError, RuntimeError, TypeError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        named = re.search(r"[Ll]ayer[: ]+['\"]?([\w./-]+)", text)
        layer = f"layer {named.group(1)!r}" if named else "a layer"
        raise UsageError(f"{what} cannot wrap {layer} of this model: {text}",
                         fix="set tfmot_wrap: selective in the backbone's catalog entry (wraps Conv2D/"
                             "DepthwiseConv2D/Dense only), or compress without this option") from exc


def outputs_in_order(model, images: TrainingImages, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The model's outputs (inference mode) on every one of ``images``, in their order."""
    return np.concatenate([np.asarray(model(batch, training=False)) for batch in images.in_order(batch_size)])


def distillation_loss(temperature: float):
    """Hinton et al.'s soft-target loss for a model whose output is a softmax: cross-entropy between the
    teacher's and the student's distributions, both softened by ``temperature`` (applied to the log
    probabilities, i.e. the logits up to a constant) and scaled by ``temperature**2`` so gradients keep
    their size. The targets (``y_true``) are the teacher's probabilities."""
    tf, _ = _tf()

    def soft_target_cross_entropy(teacher, student):
        soft_teacher = tf.nn.softmax(tf.math.log(tf.maximum(teacher, 1e-7)) / temperature)
        log_student = tf.nn.log_softmax(tf.math.log(tf.maximum(student, 1e-7)) / temperature)
        return -temperature ** 2 * tf.reduce_sum(soft_teacher * log_student, axis=-1)

    return soft_target_cross_entropy


def distillation_targets(teacher, images: TrainingImages, *, description: str) -> tuple[TrainingImages, Callable, dict]:
    """Train towards ``teacher`` instead of the labels: the images with the teacher's outputs as targets, the
    soft-target loss at :data:`DISTILLATION_TEMPERATURE`, and the record for the manifest (``description``
    names the teacher). The teacher sees the images exactly as the student's batches normalise them."""
    targets = replace(images, labels=outputs_in_order(teacher, images))
    return targets, distillation_loss(DISTILLATION_TEMPERATURE), {
        "teacher": description, "temperature": DISTILLATION_TEMPERATURE, "labels_used": False,
        "teacher_train_top1": round(float(np.mean(targets.labels.argmax(1) == images.labels)), 4)}


def frozen_copy(model):
    """A separate, untrainable copy of ``model`` with its current weights: a teacher that training ``model``
    (tfmot wraps the same layer objects) cannot move."""
    _, tf_keras = _tf()
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.trainable = False
    return copy


@dataclass
class ConsistentDistillation:
    """Distillation in which teacher and student see the same views (Beyer et al. 2022, "Knowledge distillation:
    a good teacher is patient and consistent"): every batch is a new random view of the training images
    (:data:`VIEWS`) and its targets are the teacher's outputs on that very view, computed as training goes.
    Fixed targets on the same unaugmented images every epoch let a latency-pruned MobileNetV2 match its parent
    on them (agreement 0.92) but not on unseen photos (0.745, issue 19): it learnt 1,000 answers, not the
    function. A drop-in for :class:`TrainingImages` in :func:`fine_tune`."""

    teacher: object
    images: TrainingImages
    views: Augmentation = VIEWS

    def steps_per_epoch(self, batch_size: int = BATCH_SIZE) -> int:
        return self.images.steps_per_epoch(batch_size)

    def dataset(self, *, seed: int, batch_size: int = BATCH_SIZE):
        """Augmented, normalised batches, each with the teacher's outputs on it as its targets."""
        return self.images.dataset(seed=seed, batch_size=batch_size, augmentation=self.views).map(
            lambda x, _: (x, self.teacher(x, training=False)))

    def record(self, seed: int) -> dict:
        """What the manifest says about the views."""
        return {"transforms": {"flip_left_right": self.views.flip, "crop_min_side": self.views.crop,
                               "brightness": self.views.brightness, "contrast": self.views.contrast},
                "seed": seed, "new_views_each_epoch": True,
                "teacher": "run on every augmented batch the student trains on (consistent)",
                "mixup": "not used: the student trains BatchNormalization on batch statistics, which mixed "
                         "images would shift away from the photos' (Beyer et al.'s BiT uses GroupNorm)"}


def refit_classifier(model, targets: TrainingImages, loss, *, seed: int, epochs: int = CLASSIFIER_REFIT_EPOCHS,
                     learning_rate: float = CLASSIFIER_REFIT_LEARNING_RATE) -> dict | None:
    """Fit ``model``'s final Dense layer (the classifier) again to ``targets`` with ``loss``, on the features the
    rest of the model, frozen, now computes (cached once: a few cheap epochs); return the record for the
    manifest, or None when the model does not end in a Dense layer.

    Latency pruning fine-tunes with batch statistics and then re-estimates every BatchNormalization's moving
    statistics (:func:`reestimate_batchnorm`): that changes the features the classifier reads after it was
    last trained on them. Refitting the classifier alone makes it read the features the model will run with.
    """
    from edgekit._tf import set_seed

    _, tf_keras = _tf()
    head = model.layers[-1]
    if layer_kind(head) != "dense":
        return None
    # strip_pruning's clone keeps the unpruned layers, so the head was called once per model built from it
    # (parent, wrapped, stripped) and its plain .input is the parent's; the newest call is ``model``'s
    features = outputs_in_order(tf_keras.Model(model.inputs, head.get_input_at(len(head.inbound_nodes) - 1)), targets)
    refit = tf_keras.Sequential([tf_keras.Input(features.shape[1:]), type(head).from_config(head.get_config())])
    refit.layers[-1].set_weights(head.get_weights())
    teacher_top1 = targets.labels.argmax(1)

    def agreement() -> float:
        return round(float(np.mean(np.asarray(refit(features)).argmax(1) == teacher_top1)), 4)

    before = agreement()
    set_seed(seed)
    refit.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=loss)
    history = refit.fit(features, targets.labels, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0)
    head.set_weights(refit.layers[-1].get_weights())
    return {"layer": head.name, "epochs": epochs, "learning_rate": learning_rate,
            "features": "computed once by the rest of the model as it now is (frozen)",
            "train_agreement_before": before, "train_agreement_after": agreement(),
            "loss": [round(float(v), 4) for v in history.history["loss"]]}


def fine_tune(model, images: TrainingImages | ConsistentDistillation, *, epochs: int, learning_rate: float, seed: int,
              callbacks: list | None = None, description: str, loss=None) -> dict[str, list[float]]:
    """A short fine-tune; returns the history. The default ``loss`` is sparse cross-entropy on integer labels;
    with soft targets (one probability row per image, fixed or a teacher's on each view) the ``accuracy``
    metric is agreement with their argmax."""
    from edgekit._tf import set_seed
    from edgekit.stages.finetune import _EpochProgress

    _, tf_keras = _tf()
    set_seed(seed)
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
                  loss=loss or tf_keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    history = model.fit(images.dataset(seed=seed), epochs=epochs, verbose=0,
                        callbacks=[*(callbacks or []), _EpochProgress(description, epochs)])
    return {key: [float(v) for v in values] for key, values in history.history.items()}
