"""Weight clustering (k-means++ centroids), a short fine-tune, and a unique-values report per layer.

With Keras 3, ``cluster_weights`` returns None without an error (DESIGN.md); edgekit uses tf-keras,
and still checks that a model came back so a broken environment fails loudly.
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import ConversionError
from edgekit.stages.tfmot_wrappers import TrainingImages, fine_tune, layer_kind, main_kernel, wrap_model, SPARSE_KINDS

LEARNING_RATE = 1e-4


def unique_values_report(model) -> dict:
    """Distinct kernel values per Conv/Depthwise/Dense layer (at most N in each clustered one)."""
    layers = {layer.name: {"kind": layer_kind(layer), "clustered": layer_kind(layer) in SPARSE_KINDS,
                           "unique_values": int(np.unique(main_kernel(layer)).size)}
              for layer in model.layers if layer_kind(layer)}
    return {"layers": layers, "clustered_layers": sum(row["clustered"] for row in layers.values()),
            "max_unique_values_clustered": max((row["unique_values"] for row in layers.values() if row["clustered"]),
                                               default=0)}


def cluster_model(model, images: TrainingImages, *, clusters: int, epochs: int, tfmot_wrap: str, seed: int):
    """Cluster every kernel into ``clusters`` shared values, fine-tune, strip; return (model, report)."""
    from edgekit._tf import import_tfmot

    tfmot = import_tfmot()
    api = tfmot.clustering.keras
    params = {"number_of_clusters": clusters,
              "cluster_centroids_init": api.CentroidInitialization.KMEANS_PLUS_PLUS}
    wrapped = wrap_model(model, wrap_layer=lambda layer: api.cluster_weights(layer, **params),
                         wrap_whole=lambda m: api.cluster_weights(m, **params), tfmot_wrap=tfmot_wrap,
                         what="--cluster", kinds=SPARSE_KINDS)
    if wrapped is None:
        raise ConversionError("tfmot cluster_weights returned None (it does so silently under Keras 3)",
                              fix="run with tf-keras: set TF_USE_LEGACY_KERAS=1 and install tf-keras")
    history = fine_tune(wrapped, images, epochs=epochs, learning_rate=LEARNING_RATE, seed=seed,
                        description="cluster")
    stripped = api.strip_clustering(wrapped)
    return stripped, {"clusters": clusters, **unique_values_report(stripped), "fine_tune": history}
