"""The one place TensorFlow is imported: legacy tf-keras (what tfmot needs), quietly.

tfmot only works with tf-keras (Keras 3 makes pruning/QAT raise and clustering return None), so
``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow loads, and every edgekit module uses
``tf_keras``. TensorFlow's oneDNN/CUDA banner lines ignore ``TF_CPP_MIN_LOG_LEVEL``; only
redirecting file descriptor 2 around the import silences them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

_LOADED: tuple[ModuleType, ModuleType] | None = None


@contextlib.contextmanager
def silence_native_stderr(*, stdout: bool = False) -> Iterator[list[str]]:
    """Send fd 2 (and fd 1 with ``stdout``) to a temporary file for the duration: C++ logging bypasses
    ``sys.stderr``, and LiteRT's GPU accelerator prints ``INFO: Loaded OpenCL library`` on stdout, where it
    would break ``--json``. The yielded list receives what was logged once the block ends: LiteRT, for one,
    raises a bare source location and logs the reason (``No adapters found``) only on stderr."""
    logged: list[str] = []
    if os.environ.get("EDGEKIT_DEBUG"):
        yield logged
        return
    descriptors = (1, 2) if stdout else (2,)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in descriptors]
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in descriptors:
                os.dup2(sink.fileno(), fd)
            yield logged
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip(descriptors, saved):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            logged.extend(sink.read().decode("utf-8", "replace").splitlines())


def configure_environment() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tf() -> tuple[ModuleType, ModuleType]:
    """Return ``(tensorflow, tf_keras)``, importing them once, quietly."""
    global _LOADED
    if _LOADED is None:
        configure_environment()
        with silence_native_stderr():
            import tensorflow as tf
            import tf_keras

            tf.get_logger().setLevel("ERROR")
            tf.autograph.set_verbosity(0)
        _LOADED = (tf, tf_keras)
    return _LOADED


def import_tfmot() -> ModuleType:
    import_tf()
    with silence_native_stderr():
        import tensorflow_model_optimization as tfmot
    return tfmot


def set_seed(seed: int) -> None:
    """Seed Python, numpy and TensorFlow, and ask TF for deterministic kernels."""
    import random

    import numpy as np

    tf, tf_keras = import_tf()
    random.seed(seed)
    np.random.seed(seed)
    tf_keras.utils.set_random_seed(seed)
    with contextlib.suppress(Exception):
        tf.config.experimental.enable_op_determinism()
