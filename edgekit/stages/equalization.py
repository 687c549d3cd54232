"""Cross-layer equalization of a float Keras model before int8 conversion (Nagel et al. 2019, "Data-Free
Quantization"; AIMET's CLE). In a chain conv -> BatchNorm -> ReLU -> [zero padding] -> conv, output
channel i of the first layer can be divided by s_i and input channel i of the second multiplied by s_i
without changing the function, because ReLU is positively homogeneous. With s_i = sqrt(r1_i / r2_i)
(r = the channel's largest absolute weight, BatchNorm folded in as the converter folds it) both
channels end with range sqrt(r1_i * r2_i): no channel's weights, nor the activation channel between
them, is tiny next to its neighbours' on a shared int8 grid. Chains sharing a layer (MobileNetV2's
expand -> depthwise -> project) are swept until the scales settle.

ReLU6 is not scale-equivariant (the clip at 6 would move to 6 / s_i), so, as AIMET does, the ReLU6
between two equalized layers becomes ReLU: that changes the float model a little (measure it), and
the equalization after that change is exact.
"""

from __future__ import annotations

import numpy as np

CONVOLUTIONS = ("Conv2D", "DepthwiseConv2D")
PASS_THROUGH = ("ZeroPadding2D",)  # zero padding commutes with a per-channel scale
SWEEPS = 30
SETTLED = 1e-4  # stop when no scale of a sweep differs from 1 by more than this


def _graph(model) -> tuple[dict[str, object], dict[str, list[str]]]:
    """Layers by name, and each layer's consumers (from the functional config)."""
    layers = {layer.name: layer for layer in model.layers}
    consumers: dict[str, list[str]] = {name: [] for name in layers}
    for entry in model.get_config()["layers"]:
        for node in entry.get("inbound_nodes", []):
            for inbound in node:
                consumers[inbound[0]].append(entry["name"])
    return layers, consumers


def batchnorm_scale(layer) -> np.ndarray:
    """The per-channel factor a BatchNormalization layer multiplies its input by, as the converter folds it."""
    gamma, _, _, variance = (w.astype(np.float64) for w in layer.get_weights())
    return _folded(gamma, variance, layer.epsilon)


def _folded(gamma: np.ndarray, variance: np.ndarray, epsilon: float) -> np.ndarray:
    return gamma / np.sqrt(variance + epsilon)


def _is_relu(layer, *, relu6_too: bool) -> bool:
    if type(layer).__name__ != "ReLU" or float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
        return False
    return layer.max_value is None or (relu6_too and float(layer.max_value) == 6.0)


def _linear(layer) -> bool:
    return getattr(layer, "activation", None) is None or layer.activation.__name__ == "linear"


def find_pairs(model, *, relu6_too: bool = True) -> list[tuple[str, str, str, str | None]]:
    """(first conv, its BatchNorm, next conv, the ReLU between or None) for every chain that can be equalized:
    each link has one consumer, the first conv is linear and feeds a BatchNorm with scale and offset."""
    layers, consumers = _graph(model)

    def only_consumer(name: str):
        return layers[consumers[name][0]] if len(consumers[name]) == 1 else None

    pairs = []
    for first in model.layers:
        if type(first).__name__ not in CONVOLUTIONS or not _linear(first):
            continue
        norm = only_consumer(first.name)
        if norm is None or type(norm).__name__ != "BatchNormalization" or not (norm.scale and norm.center):
            continue
        link, relu = only_consumer(norm.name), None
        if link is not None and _is_relu(link, relu6_too=relu6_too):
            relu, link = link.name, only_consumer(link.name)
        while link is not None and type(link).__name__ in PASS_THROUGH:
            link = only_consumer(link.name)
        if link is not None and type(link).__name__ in CONVOLUTIONS:
            pairs.append((first.name, norm.name, link.name, relu))
    return pairs


def relu6_to_relu(model, names: set[str]):
    """A copy of ``model`` with the named ReLU6 layers as plain ReLU, same weights."""
    from edgekit._tf import import_tf

    _, tf_keras = import_tf()

    def clone(layer):
        config = layer.get_config()
        if layer.name in names:
            config["max_value"] = None
        return type(layer).from_config(config)

    copy = tf_keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


class _Weights:
    """The kernels and BatchNorm parameters the pairs touch, as float64 arrays (written back once)."""

    def __init__(self, model, pairs):
        layers, consumers = _graph(model)
        self.layers = layers
        self.norm_after = {}  # conv -> its BatchNorm, when that is its only consumer
        for name in {name for first, _, second, _ in pairs for name in (first, second)}:
            follower = consumers[name]
            if len(follower) == 1 and type(layers[follower[0]]).__name__ == "BatchNormalization":
                self.norm_after[name] = follower[0]
        self.kernels = {name: layers[name].get_weights()[0].astype(np.float64)
                        for name in {n for first, _, second, _ in pairs for n in (first, second)}}
        self.norms = {name: [w.astype(np.float64) for w in layers[name].get_weights()]
                      for name in set(self.norm_after.values())}

    def folded_scale(self, norm: str) -> np.ndarray:
        """The per-channel factor a BatchNorm multiplies its input by (what the converter folds into the conv)."""
        gamma, _, _, variance = self.norms[norm]
        return _folded(gamma, variance, self.layers[norm].epsilon)

    def output_ranges(self, conv: str) -> np.ndarray:
        """Largest |weight| per output channel of ``conv``, its BatchNorm folded in."""
        kernel = self.kernels[conv]
        kernel = kernel.reshape(-1, kernel.shape[2] * kernel.shape[3]) if type(self.layers[conv]).__name__ == \
            "DepthwiseConv2D" else kernel.reshape(-1, kernel.shape[-1])  # depthwise: channel * multiplier
        return np.abs(kernel).max(0) * np.abs(self.folded_scale(self.norm_after[conv]))

    def input_ranges(self, conv: str) -> np.ndarray:
        """Largest |weight| per input channel of ``conv``, its own BatchNorm (if any) folded in."""
        kernel = self.kernels[conv]  # (h, w, in, out or multiplier)
        if conv in self.norm_after:
            shape = kernel.shape[2:] if type(self.layers[conv]).__name__ == "DepthwiseConv2D" else (1, -1)
            kernel = kernel * self.folded_scale(self.norm_after[conv]).reshape(shape)
        return np.abs(kernel).transpose(2, 0, 1, 3).reshape(kernel.shape[2], -1).max(1)

    def rescale(self, norm: str, second: str, scales: np.ndarray) -> None:
        """Divide the BatchNorm's output channels by ``scales``; multiply the next conv's input channels by them."""
        self.norms[norm][0] = self.norms[norm][0] / scales
        self.norms[norm][1] = self.norms[norm][1] / scales
        self.kernels[second] = self.kernels[second] * scales.reshape(1, 1, -1, 1)

    def ratios(self, pairs) -> list[float]:
        """Per pair, the median over channels of max(r1, r2) / min(r1, r2): 1.0 when equalized."""
        found = []
        for first, _, second, _ in pairs:
            r1, r2 = self.output_ranges(first), self.input_ranges(second)
            found.append(float(np.median(np.maximum(r1, r2) / np.maximum(np.minimum(r1, r2), 1e-12))))
        return found

    def write_back(self) -> None:
        for name, kernel in self.kernels.items():
            weights = self.layers[name].get_weights()
            self.layers[name].set_weights([kernel.astype(weights[0].dtype)] + weights[1:])
        for name, params in self.norms.items():
            self.layers[name].set_weights([p.astype(np.float32) for p in params])


def equalize(model) -> tuple[object, dict]:
    """The equalized copy of ``model`` (ReLU6 between equalized layers made ReLU) and a report."""
    pairs = find_pairs(model)
    model = relu6_to_relu(model, {relu for *_, relu in pairs if relu is not None})
    weights = _Weights(model, pairs)
    before = weights.ratios(pairs)
    sweeps = 0
    for sweeps in range(1, SWEEPS + 1):
        largest_change = 0.0
        for first, norm, second, _ in pairs:
            r1, r2 = weights.output_ranges(first), weights.input_ranges(second)
            usable = (r1 > 0) & (r2 > 0)  # a dead channel keeps its scale
            scales = np.where(usable, np.sqrt(np.where(usable, r1, 1.0) / np.where(usable, r2, 1.0)), 1.0)
            weights.rescale(norm, second, scales)
            largest_change = max(largest_change, float(np.max(np.abs(np.log(scales)))))
        if largest_change < SETTLED:
            break
    after = weights.ratios(pairs)
    weights.write_back()
    return model, {
        "pairs": len(pairs), "sweeps": sweeps, "relu6_made_relu": sum(relu is not None for *_, relu in pairs),
        "median_channel_range_ratio_before": round(float(np.median(before)), 3) if pairs else None,
        "median_channel_range_ratio_after": round(float(np.median(after)), 3) if pairs else None,
        "per_pair": [{"first": first, "second": second, "range_ratio_before": round(b, 3), "range_ratio_after":
                      round(a, 3)} for (first, _, second, _), b, a in zip(pairs, before, after)]}
