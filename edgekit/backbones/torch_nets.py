"""MobileNetV2 and EfficientNet-Lite0 as flat tf_keras graphs that take PyTorch ImageNet weights.

Both are stacks of inverted-residual blocks (1x1 expand, depthwise, 1x1 project, skip when the
shape allows), so one builder serves both; a :class:`TorchNet` says what differs: block table,
activation, BatchNorm epsilon, padding, and the state-dict names of each layer. Only standard layers
are used (Conv2D, DepthwiseConv2D, BatchNormalization, ReLU, Add, ZeroPadding2D, pooling, Dropout,
Dense) with unique names and no nesting, so tfmot can wrap the whole model and every converter
handles it.

Padding is the catch that decides accuracy: torchvision pads stride-2 convolutions symmetrically
(``ZeroPadding2D`` + ``valid`` here), while the EfficientNet-Lite weights come from TF checkpoints
trained with TF's asymmetric ``same`` padding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import ModelFileError

# tf.nn.fused_batch_norm raises any epsilon below this to it; the variance absorbs the difference.
KERAS_MIN_EPSILON = 1.001e-5


@dataclass(frozen=True)
class Block:
    expand: int  # expansion ratio (1: no expand conv)
    out: int
    kernel: int
    stride: int


@dataclass(frozen=True)
class TorchNet:
    blocks: tuple[Block, ...]
    stem: int
    head: int
    epsilon: float
    symmetric_padding: bool  # True: torch-style padding k//2; False: TF 'same'
    stem_names: tuple[str, str]  # (conv, bn) state-dict prefixes
    head_names: tuple[str, str]
    fc_name: str
    block_names: Callable[[int, bool], dict[str, str]]  # (block index, has expand) -> role -> prefix
    divisor: int = 8


def _stages(*rows: tuple[int, int, int, int, int]) -> tuple[Block, ...]:
    """Expand (expansion, out, repeats, stride, kernel) rows: only a stage's first block strides."""
    return tuple(Block(t, c, k, s if i == 0 else 1) for t, c, n, s, k in rows for i in range(n))


def _mobilenet_v2_names(index: int, has_expand: bool) -> dict[str, str]:
    base = f"features.{index + 1}.conv"
    if has_expand:
        return {"expand": f"{base}.0.0", "expand_bn": f"{base}.0.1", "dw": f"{base}.1.0", "dw_bn": f"{base}.1.1",
                "project": f"{base}.2", "project_bn": f"{base}.3"}
    return {"dw": f"{base}.0.0", "dw_bn": f"{base}.0.1", "project": f"{base}.1", "project_bn": f"{base}.2"}


def _efficientnet_names(index: int, has_expand: bool) -> dict[str, str]:
    base = f"_blocks.{index}"
    names = {"dw": f"{base}._depthwise_conv", "dw_bn": f"{base}._bn1", "project": f"{base}._project_conv",
             "project_bn": f"{base}._bn2"}
    if has_expand:
        names |= {"expand": f"{base}._expand_conv", "expand_bn": f"{base}._bn0"}
    return names


MOBILENET_V2_BLOCKS = _stages((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 32, 3, 2, 3), (6, 64, 4, 2, 3),
                              (6, 96, 3, 1, 3), (6, 160, 3, 2, 3), (6, 320, 1, 1, 3))

NETS: dict[str, TorchNet] = {
    "mobilenet_v2": TorchNet(
        blocks=MOBILENET_V2_BLOCKS, stem=32, head=1280, epsilon=1e-5, symmetric_padding=True,
        stem_names=("features.0.0", "features.0.1"),
        head_names=(f"features.{len(MOBILENET_V2_BLOCKS) + 1}.0", f"features.{len(MOBILENET_V2_BLOCKS) + 1}.1"),
        fc_name="classifier.1", block_names=_mobilenet_v2_names),
    "efficientnet_lite0": TorchNet(
        blocks=_stages((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
                       (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)),
        stem=32, head=1280, epsilon=1e-3, symmetric_padding=False,
        stem_names=("_conv_stem", "_bn0"), head_names=("_conv_head", "_bn1"), fc_name="_fc",
        block_names=_efficientnet_names),
}


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: nearest multiple of ``divisor``, never below 90% of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def build_torch_net(name: str, *, input_size: int, alpha: float, batch_size: int | None,
                    include_top: bool) -> tuple[Any, dict[str, tuple[str, str]]]:
    """The Keras graph for ``name`` and how to fill it: keras layer -> (kind, state-dict prefix)."""
    from edgekit._tf import import_tf

    _, keras = import_tf()
    net = NETS[name]
    layers = keras.layers
    sources: dict[str, tuple[str, str]] = {}

    def conv(x, filters: int, kernel: int, stride: int, layer: str, source: str, *, depthwise: bool = False):
        padding = "same"
        if stride > 1 and net.symmetric_padding:
            x = layers.ZeroPadding2D(kernel // 2, name=f"{layer}_pad")(x)
            padding = "valid"
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, padding=padding, use_bias=False, name=layer)(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False, name=layer)(x)
        sources[layer] = ("depthwise" if depthwise else "conv", source)
        return x

    def batch_norm(x, layer: str, source: str, *, relu: bool):
        x = layers.BatchNormalization(epsilon=max(net.epsilon, KERAS_MIN_EPSILON), name=layer)(x)
        sources[layer] = ("bn", source)
        return layers.ReLU(6.0, name=f"{layer}_relu6")(x) if relu else x

    inputs = keras.Input(shape=(input_size, input_size, 3), batch_size=batch_size, name="input")
    width = make_divisible(net.stem * alpha, net.divisor)
    x = conv(inputs, width, 3, 2, "stem_conv", net.stem_names[0])
    x = batch_norm(x, "stem_bn", net.stem_names[1], relu=True)
    for index, block in enumerate(net.blocks):
        names = net.block_names(index, block.expand != 1)
        out = make_divisible(block.out * alpha, net.divisor)
        shortcut, prefix = x, f"block{index}"
        if block.expand != 1:
            x = conv(x, width * block.expand, 1, 1, f"{prefix}_expand", names["expand"])
            x = batch_norm(x, f"{prefix}_expand_bn", names["expand_bn"], relu=True)
        x = conv(x, 0, block.kernel, block.stride, f"{prefix}_dw", names["dw"], depthwise=True)
        x = batch_norm(x, f"{prefix}_dw_bn", names["dw_bn"], relu=True)
        x = conv(x, out, 1, 1, f"{prefix}_project", names["project"])
        x = batch_norm(x, f"{prefix}_project_bn", names["project_bn"], relu=False)
        if block.stride == 1 and width == out:
            x = layers.Add(name=f"{prefix}_add")([shortcut, x])
        width = out
    head = make_divisible(net.head * max(1.0, alpha), net.divisor)
    x = conv(x, head, 1, 1, "head_conv", net.head_names[0])
    x = batch_norm(x, "head_bn", net.head_names[1], relu=True)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dropout(0.2, name="predictions_dropout")(x)
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
        sources["predictions"] = ("dense", net.fc_name)
    return keras.Model(inputs, x, name=name), sources


def convert_state_dict(state: dict[str, np.ndarray], sources: dict[str, tuple[str, str]], *, epsilon: float,
                       where: str) -> dict[str, list[np.ndarray]]:
    """Keras weight lists per layer from a torch state dict: kernels transposed, BN epsilon folded."""
    converted: dict[str, list[np.ndarray]] = {}
    for layer, (kind, prefix) in sources.items():
        try:
            if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
                converted[layer] = [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
            elif kind == "depthwise":  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
                converted[layer] = [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
            elif kind == "dense":
                converted[layer] = [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
            else:
                keras_eps = max(epsilon, KERAS_MIN_EPSILON)
                variance = np.maximum(state[f"{prefix}.running_var"] + (epsilon - keras_eps), 0.0)
                converted[layer] = [state[f"{prefix}.weight"], state[f"{prefix}.bias"],
                                    state[f"{prefix}.running_mean"], variance]
        except KeyError as exc:
            raise ModelFileError(f"{where} has no tensor {exc.args[0]!r} for layer {layer}: not the weights of this "
                                 "architecture", fix="pass the weights file listed in the backbone catalog") from None
    return {layer: [np.ascontiguousarray(w, dtype=np.float32) for w in weights] for layer, weights in converted.items()}


def assign_weights(model, weights: dict[str, list[np.ndarray]], *, where: str) -> None:
    """Set each layer's weights, refusing any shape mismatch with a message naming the layer."""
    for layer_name, values in weights.items():
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if expected != [v.shape for v in values]:
            raise ModelFileError(f"{where}: layer {layer_name} expects shapes {expected}, the file has "
                                 f"{[v.shape for v in values]}", fix="pass the weights file listed in the catalog")
        layer.set_weights(values)
