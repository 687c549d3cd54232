"""Transfer learning from an image folder onto a pretrained backbone.

Phase 1 trains only the classification head, on backbone features computed once and cached (on
disk, keyed by everything that determines them), so many head epochs cost seconds instead of a
full forward pass each. Phase 2 optionally unfreezes the top N backbone layers and trains end to
end at a lower learning rate, with augmentation, through ``model.fit`` with Keras' BackupAndRestore
(the training state saved every epoch) so ``resume=True`` continues after an interruption.

The classifier is built *flat* (``Model(backbone.input, head(backbone.output))``): tfmot only sees
layers of the outermost model, and silently skips a nested backbone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.artifacts import (Artifact, Manifest, Preprocessing, TrainingData, atomic_path, check_output_dir,
                               library_versions, write_artifact, write_json_atomic, write_text_atomic)
from edgekit.data import (Augmentation, class_weights, files_fingerprint, images_sha256, load_folder_arrays,
                          load_splits, normalize)
from edgekit.evaluation import keras_outputs
from edgekit.errors import DataError, UsageError
from edgekit.options import FinetuneOptions
from edgekit.progress import status

HEAD_DENSE = "edgekit_head_dense"
HEAD_DROPOUT = "edgekit_head_dropout"
MODEL_FILE = "model.keras"


class FinetuneConfig(FinetuneOptions):
    """The finetune options (:class:`edgekit.options.FinetuneOptions`) plus the digest checkpoints are keyed by."""

    def digest(self, *parts: str) -> str:
        payload = json.dumps(self.model_dump(), sort_keys=True) + "|".join(parts)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class FinetuneResult:
    artifact: Artifact
    metrics: dict
    timings: dict = field(default_factory=dict)
    kept_epochs: dict = field(default_factory=dict)  # per phase: which epoch's weights were kept, and why


def build_classifier(backbone, num_classes: int, *, dropout: float):
    """Attach Dropout + Dense(softmax) to the backbone's pooled output, in one flat functional model."""
    _, tf_keras = _tf()
    x = backbone.output
    if dropout:
        x = tf_keras.layers.Dropout(dropout, name=HEAD_DROPOUT)(x)
    outputs = tf_keras.layers.Dense(num_classes, activation="softmax", name=HEAD_DENSE)(x)
    return tf_keras.Model(backbone.input, outputs, name="edgekit_classifier")


def _tf():
    from edgekit._tf import import_tf

    return import_tf()


def _cached_features(cache_dir: Path, key: str, compute) -> np.ndarray:
    path = cache_dir / f"features-{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    features = compute()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, features, allow_pickle=False)
    return features


DISTRIBUTE_CHOICES = ("none", "mirrored", "multi_worker_mirrored")


def distribution_scope(name: str):
    """A ``tf.distribute`` strategy scope (TensorFlow's own multi-device/multi-worker training), or a no-op.

    ``mirrored`` replicates over the local GPUs, or where there is none over the logical CPU devices
    (``tf.config.set_logical_device_configuration``; TensorFlow's default would take one CPU only);
    ``multi_worker_mirrored`` over machines described by the ``TF_CONFIG`` environment variable.
    edgekit adds no mechanism of its own.
    """
    if name == "none":
        return contextlib.nullcontext()
    tf, _ = _tf()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    status(f"training under tf.distribute.{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)")
    return strategy.scope()


def finetune(*, data: Path, out_dir: Path, config: FinetuneConfig = FinetuneConfig(), resume: bool = False,
             strict: bool = False, distribute: str = "none", val_data: Path | None = None) -> FinetuneResult:
    """Train a classifier on ``data`` and write ``out_dir/model.keras`` + manifest, metrics and plots.

    Validation images: ``val_data``, else ``data/val`` beside ``data/train``, else a seeded split.
    """
    from edgekit._tf import set_seed
    from edgekit.backbones import build_backbone, get_backbone
    from edgekit.metrics import classification_report
    from edgekit.plots import confusion_matrix_png

    if distribute not in DISTRIBUTE_CHOICES:
        raise UsageError(f"unknown distribution strategy {distribute!r}",
                         fix=f"use one of {', '.join(DISTRIBUTE_CHOICES)}")
    spec = get_backbone(config.backbone)
    out_dir = check_output_dir(out_dir, inputs=(Path(data),) + ((Path(val_data),) if val_data else ()))
    size = config.input_size or spec.default_size
    preprocessing = Preprocessing(size=(size, size), mean=spec.preprocessing.mean, std=spec.preprocessing.std,
                                  resize_method=spec.preprocessing.resize_method)
    splits = load_splits(data, validation_fraction=config.validation_fraction, seed=config.seed, strict=strict,
                         val_dir=val_data)
    classes = splits.train.classes
    if len(classes) < 2:
        raise DataError(f"{data} has only one class ({classes[0]})", fix="a classifier needs at least 2 class folders")
    timings: dict[str, float] = {}
    started = time.perf_counter()

    tf, tf_keras = _tf()
    set_seed(config.seed)
    scope = contextlib.ExitStack()
    scope.enter_context(distribution_scope(distribute))
    backbone = build_backbone(config.backbone, input_size=size, weights=config.weights, alpha=config.alpha)
    backbone.trainable = False
    timings["build_backbone_s"] = time.perf_counter() - started

    tick = time.perf_counter()
    train_pixels, train_labels = load_folder_arrays(splits.train, preprocessing)
    val_pixels, val_labels = load_folder_arrays(splits.val, preprocessing)
    timings["load_images_s"] = time.perf_counter() - tick

    # Phase 1: features computed once per (backbone, data, augmentation copy), cached on disk.
    cache_dir = out_dir / "cache"
    data_key = files_fingerprint(splits.train.paths + splits.val.paths)
    feature_key = FinetuneConfig(backbone=config.backbone, weights=config.weights, input_size=size,
                                 alpha=config.alpha, seed=config.seed,
                                 validation_fraction=config.validation_fraction).digest(data_key)
    tick = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    augmentation = Augmentation()
    train_feature_sets = [
        _cached_features(cache_dir, f"{feature_key}-train-0",
                         lambda: keras_outputs(backbone, train_pixels, preprocessing, batch_size=64,
                                                  description="backbone features (train)"))]
    for copy in range(1, 1 + (config.augment_copies if config.augment else 0)):
        augmented = augmentation.apply(train_pixels, rng)
        train_feature_sets.append(_cached_features(
            cache_dir, f"{feature_key}-train-{copy}",
            lambda pixels=augmented, copy=copy: keras_outputs(
                backbone, pixels, preprocessing, batch_size=64, description=f"backbone features (augmented copy {copy})")))
    val_features = _cached_features(cache_dir, f"{feature_key}-val",
                                    lambda: keras_outputs(backbone, val_pixels, preprocessing, batch_size=64,
                                                             description="backbone features (validation)"))
    timings["features_s"] = time.perf_counter() - tick

    features = np.concatenate(train_feature_sets)
    feature_labels = np.tile(train_labels, len(train_feature_sets))
    num_classes = len(classes)
    head_input = tf_keras.Input(shape=(features.shape[1],), name="features")
    head_x = tf_keras.layers.Dropout(config.dropout, name=HEAD_DROPOUT)(head_input) if config.dropout else head_input
    head_out = tf_keras.layers.Dense(num_classes, activation="softmax", name=HEAD_DENSE)(head_x)
    head = tf_keras.Model(head_input, head_out)
    loss = tf_keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    head.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate), loss=loss, metrics=["accuracy"])
    keep_best = _KeepBestEpoch()
    callbacks = [_EpochProgress("head", config.epochs), keep_best]
    if config.early_stopping:  # decides when to stop; keep_best decides which epoch's weights remain
        callbacks.append(tf_keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.early_stopping))
    tick = time.perf_counter()
    history = head.fit(
        features, tf_keras.utils.to_categorical(feature_labels, num_classes), batch_size=config.batch_size,
        epochs=config.epochs, shuffle=True, verbose=0, callbacks=callbacks,
        validation_data=(val_features, tf_keras.utils.to_categorical(val_labels, num_classes)),
        class_weight=class_weights(feature_labels, num_classes) if config.balance_classes else None)
    timings["head_training_s"] = time.perf_counter() - tick
    timings["head_epochs"] = len(history.history["loss"])
    kept = {"head": _kept_epoch("head", history.history, keep_best.best_epoch)}

    model = build_classifier(backbone, num_classes, dropout=config.dropout)
    model.get_layer(HEAD_DENSE).set_weights(head.get_layer(HEAD_DENSE).get_weights())
    histories = {"head": {k: [float(v) for v in vals] for k, vals in history.history.items()}}

    if config.fine_tune_layers:
        tick = time.perf_counter()
        histories["fine_tune"], best_epoch = _fine_tune_top_layers(
            model, backbone, train_pixels, train_labels, val_pixels, val_labels, preprocessing, config,
            checkpoint_dir=out_dir / "checkpoints", run_key=config.digest(data_key), resume=resume)
        kept["fine_tune"] = _kept_epoch("fine-tune", histories["fine_tune"], best_epoch)
        timings["fine_tune_s"] = time.perf_counter() - tick
    scope.close()

    tick = time.perf_counter()
    if config.fine_tune_layers:
        probabilities = keras_outputs(model, val_pixels, preprocessing, batch_size=64, description="evaluating")
    else:  # the backbone is unchanged, so the cached validation features give the same outputs
        probabilities = np.asarray(head(val_features, training=False))
    report = classification_report(val_labels, probabilities, classes)
    timings["evaluate_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started

    manifest = Manifest(
        format="keras", artifact=MODEL_FILE, stage="finetune", labels=classes,
        preprocessing=preprocessing.to_dict(),
        input={"shape": [1, size, size, 3], "dtype": "float32", "name": model.input.name.split(":")[0]},
        output={"shape": [1, num_classes], "dtype": "float32", "activation": "softmax"},
        backbone=config.backbone, options=config.model_dump() | {"input_size": size, "distribute": distribute},
        seed=config.seed,
        metrics={"validation": _headline(report)},
        training=TrainingData(folder=str(Path(data).expanduser().resolve()), split=splits.source,
                              images_sha256=images_sha256({"train": splits.train, "val": splits.val})),
        tfmot_wrap=spec.tfmot_wrap,
        extra={"train_images": len(splits.train.items), "validation_images": len(splits.val.items),
               "skipped_files": [f"{p}: {r}" for p, r in splits.train.skipped[:20]],
               "history": histories, "kept_epochs": kept,
               "timings_s": {k: round(v, 3) for k, v in timings.items()}},
        versions=library_versions("tensorflow", "tf-keras", "numpy"),
    )
    from edgekit.keras_io import save_keras_model

    artifact = write_artifact(out_dir, MODEL_FILE, manifest, writer=lambda tmp: save_keras_model(model, tmp))
    write_text_atomic(out_dir / "labels.txt", "\n".join(classes) + "\n")
    write_json_atomic(out_dir / "metrics.json", {"validation": report, "timings_s": timings})
    confusion_matrix_png(report["confusion_matrix"], classes, out_dir / "confusion_matrix.png",
                         title=f"{config.backbone} validation (accuracy {report['accuracy']:.3f})")
    from edgekit.monitoring import write_reference_profile

    write_reference_profile(out_dir, train_data=splits.train, heldout_data=splits.val,
                            heldout_probabilities=probabilities, seed=config.seed)
    return FinetuneResult(artifact=artifact, metrics=report, timings=timings, kept_epochs=kept)


def _headline(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("per_class", "confusion_matrix", "labels")}


def _better(candidate: tuple[float, float], best: tuple[float, float] | None) -> bool:
    """Whether (val_accuracy, val_loss) beats ``best``: higher accuracy, or equal accuracy and lower loss."""
    return best is None or candidate[0] > best[0] or (candidate[0] == best[0] and candidate[1] < best[1])


def _kept_epoch(phase: str, history: dict, epoch: int) -> dict:
    """The record (and the one status line) of which epoch's weights a phase kept; ``epoch`` 0 = before it."""
    ran = len(history["val_accuracy"])
    if epoch == 0:
        record = {"epoch": 0, "of": ran, "reason": "no epoch beat the model before this phase"}
    else:
        record = {"epoch": epoch, "of": ran, "val_accuracy": history["val_accuracy"][epoch - 1],
                  "val_loss": history["val_loss"][epoch - 1],
                  "reason": "best validation accuracy (ties: lowest validation loss)"}
    detail = "the weights from before it" if epoch == 0 else \
        f"epoch {epoch}/{ran} (val_accuracy={record['val_accuracy']:.4f} val_loss={record['val_loss']:.4f})"
    status(f"[{phase}] kept {detail}: {record['reason']}")
    return record


class _KeepBestEpoch:
    """A Keras callback that restores, at the end of training, the weights of the best epoch by :func:`_better`.

    Keras' ModelCheckpoint / EarlyStopping(restore_best_weights) monitor one quantity, so they cannot
    break accuracy ties by loss; this keeps the best weights in memory (the head is one Dense layer).
    """

    def __new__(cls):
        _, tf_keras = _tf()

        class Callback(tf_keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.best, self.best_epoch, self.weights = None, 0, None

            def on_epoch_end(self, epoch, logs=None):
                score = (float(logs["val_accuracy"]), float(logs["val_loss"]))
                if _better(score, self.best):
                    self.best, self.best_epoch, self.weights = score, epoch + 1, self.model.get_weights()

            def on_train_end(self, logs=None):
                if self.weights is not None:
                    self.model.set_weights(self.weights)

        return Callback()


class _EpochProgress:
    """A Keras callback that narrates epochs on stderr (one line each) when progress is enabled."""

    def __new__(cls, phase: str, epochs: int):
        _, tf_keras = _tf()
        from edgekit.progress import enabled

        class Callback(tf_keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if enabled() and logs:
                    shown = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
                    status(f"[{phase}] epoch {epoch + 1}/{epochs} {shown}")

        return Callback()


class _FineTuneBatches:
    """Training batches for ``model.fit``: each epoch a fresh shuffle and augmentation drawn from
    (seed, epoch), so an epoch that BackupAndRestore resumes sees the batches it would have seen."""

    def __new__(cls, pixels: np.ndarray, labels: np.ndarray, num_classes: int, preprocessing: Preprocessing,
                config: FinetuneConfig):
        _, tf_keras = _tf()
        augmentation = Augmentation()

        class Batches(tf_keras.utils.Sequence):
            epoch = 0  # set from the restored optimizer step when training starts, then counted here

            def __len__(self):
                return -(-len(pixels) // config.batch_size)

            def __getitem__(self, index):
                order = np.random.default_rng([config.seed, self.epoch]).permutation(len(pixels))
                idx = order[index * config.batch_size:(index + 1) * config.batch_size]
                batch = pixels[idx]
                if config.augment:
                    batch = augmentation.apply(batch, np.random.default_rng([config.seed, self.epoch, index]))
                return normalize(batch, preprocessing), tf_keras.utils.to_categorical(labels[idx], num_classes)

            def on_epoch_end(self):
                self.epoch += 1

        return Batches()


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM until the block ends, so the Keras backup and the state beside it are written together."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _BackupWithBestEpoch:
    """Keras' BackupAndRestore, which also keeps on disk the history so far and the weights of the best
    epoch by :func:`_better` (epoch 0 = the model before fine-tuning), so both survive an interruption.

    Keras restores the weights, optimizer and epoch; ``batches`` learns from the restored optimizer step
    which epoch's shuffle comes next. ``baseline`` (the (accuracy, loss) before fine-tuning) must be set
    before ``fit``.
    """

    def __new__(cls, model, batches, *, epochs: int, backup_dir: Path, best_checkpoint: Path, state_path: Path):
        _, tf_keras = _tf()

        def save_weights(path: Path) -> None:
            with atomic_path(path) as tmp:
                model.save_weights(str(tmp))

        class Callback(tf_keras.callbacks.BackupAndRestore):
            baseline: tuple[float, float]

            def on_train_begin(self, logs=None):
                super().on_train_begin(logs)
                done = int(model.optimizer.iterations.numpy()) // len(batches)
                batches.epoch = done
                if done == 0:
                    self.history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
                    self.best, self.best_epoch = self.baseline, 0
                    save_weights(best_checkpoint)
                    return
                state = json.loads(state_path.read_text())
                self.history = state["history"]
                self.best, self.best_epoch = tuple(state["best"]), state["best_epoch"]
                status(f"resuming fine-tuning after epoch {done} from {backup_dir}")

            def on_epoch_end(self, epoch, logs=None):
                for key in self.history:
                    self.history[key].append(float(logs[key]))
                status(f"[fine-tune] epoch {epoch + 1}/{epochs} loss={logs['loss']:.4f} "
                       f"val_accuracy={logs['val_accuracy']:.4f} val_loss={logs['val_loss']:.4f}")
                score = (float(logs["val_accuracy"]), float(logs["val_loss"]))
                with _signals_deferred():
                    if _better(score, self.best):
                        self.best, self.best_epoch = score, epoch + 1
                        save_weights(best_checkpoint)
                    super().on_epoch_end(epoch, logs)
                    write_json_atomic(state_path, {"epoch": epoch + 1, "history": self.history,
                                                   "best": list(self.best), "best_epoch": self.best_epoch})

        return Callback(str(backup_dir))


def _fine_tune_top_layers(model, backbone, train_pixels, train_labels, val_pixels, val_labels,
                          preprocessing: Preprocessing, config: FinetuneConfig, *, checkpoint_dir: Path,
                          run_key: str, resume: bool) -> tuple[dict, int]:
    """Unfreeze the top N backbone layers (BatchNorm stays frozen) and train end to end with ``model.fit``.

    Keras' BackupAndRestore saves the training state every epoch, so ``resume=True`` continues an
    interrupted run (without it, an earlier run's backup is discarded). Returns the history and the epoch
    whose weights the model ends with: the best by :func:`_better`, where epoch 0 is the head-only model
    before fine-tuning (kept when no epoch beats it).
    """
    _, tf_keras = _tf()
    backbone.trainable = True
    trainable_layers = [layer for layer in backbone.layers if layer.weights]
    for layer in backbone.layers:
        layer.trainable = False
    for layer in trainable_layers[-config.fine_tune_layers:]:
        if not isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.trainable = True
    num_classes = model.output_shape[-1]
    model.compile(optimizer=tf_keras.optimizers.Adam(config.fine_tune_learning_rate),
                  loss=tf_keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  metrics=["accuracy"])
    backup_dir = checkpoint_dir / f"finetune-{run_key}"
    best_checkpoint = checkpoint_dir / f"finetune-{run_key}.best.h5"  # legacy-h5 format on save and load
    state_path = checkpoint_dir / f"finetune-{run_key}.json"
    if not (resume and backup_dir.is_dir() and state_path.is_file() and best_checkpoint.is_file()):
        shutil.rmtree(backup_dir, ignore_errors=True)
    val_x = normalize(val_pixels, preprocessing)
    val_y = tf_keras.utils.to_categorical(val_labels, num_classes)
    batches = _FineTuneBatches(train_pixels, train_labels, num_classes, preprocessing, config)
    backup = _BackupWithBestEpoch(model, batches, epochs=config.fine_tune_epochs, backup_dir=backup_dir,
                                  best_checkpoint=best_checkpoint, state_path=state_path)
    val_loss, val_accuracy = model.evaluate(val_x, val_y, batch_size=64, verbose=0)
    backup.baseline = (float(val_accuracy), float(val_loss))  # the score to beat when no epoch was restored
    model.fit(batches, epochs=config.fine_tune_epochs, shuffle=False, verbose=0, callbacks=[backup],
              validation_data=(val_x, val_y), validation_batch_size=64)
    if backup.best_epoch != len(backup.history["val_accuracy"]):
        model.load_weights(str(best_checkpoint))
    return backup.history, backup.best_epoch
