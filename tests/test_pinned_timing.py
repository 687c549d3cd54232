"""edgekit times a model one way (runtime/latency.py: a fresh runner process pinned to its cores), for
``edgekit profile`` and for the stages' own checks alike."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def tiny_tflite() -> bytes:
    from edgekit._tf import import_tf

    tf, keras = import_tf()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), batch_size=1)
    outputs = keras.layers.Dense(4)(keras.layers.Flatten()(keras.layers.Conv2D(8, 3)(inputs)))
    return tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert()


def _cores() -> set[int]:
    return os.sched_getaffinity(0)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two cores to tell a pinned child from a free one")
def test_the_sparse_latency_signature_times_in_fresh_processes_and_leaves_reused_children_unpinned(tiny_tflite):
    """compress runs inside reusing_children(): timing there must neither reuse the conversions' child (not
    fresh; TensorFlow may be loaded in it) nor pin it, which would slow every later conversion to one core."""
    from edgekit.child_process import reusing_children, run_isolated
    from edgekit.stages.xnnpack_sparse import latency_signature

    with reusing_children():
        signature = latency_signature(tiny_tflite, tiny_tflite, rounds=2, runs=3)
        child_cores = run_isolated(_cores, what="reading the child's cores", fix="-")
    assert child_cores == os.sched_getaffinity(0)
    assert len(signature["sparse_p50_ms"]) == len(signature["dense_p50_ms"]) == 2
    assert all(ms > 0 for ms in signature["sparse_p50_ms"] + signature["dense_p50_ms"])
    assert signature["min"] <= signature["speedup"] <= signature["max"]
