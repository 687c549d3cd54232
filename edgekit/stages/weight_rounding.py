"""AdaRound-style weight rounding (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
Quantization"; AIMET and NNCF ship it) for the TFLite converter's per-channel int8 kernels.

Round-to-nearest makes each weight's error as small as it can be, not each layer's output error. AdaRound picks,
per weight, the grid point below or above it so that the layer's output on calibration images moves least: a
continuous relaxation h(V) in [0, 1] of "round up", pushed to 0 or 1 by an annealed regulariser, minimising
||X_float W - X_rounded W~||^2, where X_rounded is the layer's input with the layers before it already
rounded (AdaRound's asymmetric reconstruction: it also absorbs the error those layers left behind).
Here the loss goes through the input's Gram matrices (X_rounded' X_rounded and X_rounded' X_float, summed over
every image and spatial position), so each of the few hundred full-batch steps costs one cin x cin product,
not a pass over the images. The target is the layer's output before its activation. Both inputs come from one
pass per model through the network (each layer runs once per batch, the rounded model's layers after they are
rounded), not from a sub-model per layer that re-ran the network from its input (quadratic in depth).

The converter is left alone: it folds BatchNorm into the kernel and rounds to nearest on a per-channel step.
So the chosen integers are written back as float weights that sit exactly on the converter's own grid (the
steps read from a plain int8 conversion: some are wider than max|w|/127, where an int32 bias would overflow),
with each channel's largest weight kept at its nearest point (its step stays the same) and the BatchNorm
scale divided back out; the converter's round-to-nearest then lands on the chosen integers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from edgekit.errors import ConversionError

TFLITE_TAIL = {"Conv2D": "Conv2D", "DepthwiseConv2D": "depthwise", "Dense": "MatMul"}  # layer -> its kernel's name
IMAGES = 64
STEPS = 400
WARMUP = 0.2  # share of the steps with no rounding regulariser (AdaRound's warm start)
BETA = (20.0, 2.0)  # the regulariser's exponent, annealed from sharp to flat as in the paper
REGULARISER = 0.1  # weight of the mean rounding regulariser against the error relative to round-to-nearest
LEARNING_RATE = 0.01
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (paper's values)
BATCH = 8  # images per forward pass while the Gram matrices are summed
# A layer seen at fewer input rows (images x output positions) than this many per kernel input keeps
# round-to-nearest: its Gram matrix is (nearly) singular, and choices fitted to it would fit those images only
# (MobileNetV2's classifier: 64 rows for 1,280 inputs).
MIN_ROWS_PER_INPUT = 2


@dataclass
class Grid:
    """One conv/depthwise/dense layer's kernel on the converter's int8 grid, in the Keras kernel's layout."""

    layer: object
    folding: np.ndarray  # the BatchNorm factor the converter folds into the kernel (1 without a BatchNorm)
    folded: np.ndarray  # the float kernel times ``folding``, float64
    integers: np.ndarray  # the converter's int8 values
    step: np.ndarray  # the converter's per-channel step, broadcast to the kernel
    chosen: np.ndarray | None = None  # the integers written back by :meth:`write`

    @property
    def kind(self) -> str:
        return type(self.layer).__name__

    def write(self, integers: np.ndarray) -> None:
        """Set the layer's kernel to the float weights whose folded, rounded value is ``integers``."""
        weights = self.layer.get_weights()
        self.chosen = integers
        self.layer.set_weights([(integers * self.step / self.folding).astype(weights[0].dtype)] + weights[1:])


def int8_kernels(int8_bytes: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every per-channel int8 conv/depthwise/dense weight tensor of a .tflite, by name: its integers and its
    step (broadcast to it)."""
    from edgekit.runtime.backends import tflite_runtime_module

    _, module = tflite_runtime_module()
    interpreter = module.Interpreter(model_content=int8_bytes)
    found = {}
    for detail in interpreter.get_tensor_details():
        quant = detail["quantization_parameters"]
        if detail["dtype"] != np.int8 or len(detail["shape"]) not in (2, 4) or len(quant["scales"]) < 2:
            continue
        try:
            values = interpreter.get_tensor(detail["index"]).astype(np.int64)
        except ValueError:  # an activation (no data before a run)
            continue
        shape = [1] * values.ndim
        shape[quant["quantized_dimension"]] = -1
        found[detail["name"]] = values, np.broadcast_to(quant["scales"].reshape(shape), values.shape)
    return found


def _keras_layout(kernel: np.ndarray, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """A TFLite kernel in the Keras layer's layout."""
    if kind == "Conv2D":  # (out, h, w, in) -> (h, w, in, out)
        return kernel.transpose(1, 2, 3, 0)
    if kind == "DepthwiseConv2D":  # (1, h, w, in * multiplier) -> (h, w, in, multiplier)
        return kernel.reshape(shape)
    return kernel.T  # Dense: (out, in) -> (in, out)


def converter_grids(model, int8_bytes: bytes) -> list[Grid]:
    """Each conv/depthwise/dense layer of ``model`` (execution order) with the kernel the int8 conversion of it
    (``int8_bytes``) wrote: matched by the layer's name in the kernel tensor's name."""
    from edgekit.stages.equalization import _graph, batchnorm_scale

    layers, consumers = _graph(model)
    kernels = int8_kernels(int8_bytes)
    grids = []
    for name, layer in layers.items():
        kind = type(layer).__name__
        if kind not in TFLITE_TAIL:
            continue
        matches = [tensor for tensor in kernels if f"/{name}/{TFLITE_TAIL[kind]}" in tensor]
        if len(matches) != 1:  # AdaRound needs each layer's own grid; a renamed or shared kernel hides it
            raise ConversionError(f"--weight-rounding adaround: layer {name!r} matches {len(matches)} int8 kernels "
                                  "in the converted model, so its converter grid is unknown",
                                  fix="drop --weight-rounding (round-to-nearest), or give each conv/dense layer a "
                                      "unique name")
        kernel = layer.get_weights()[0]
        integers, step = (_keras_layout(array, kind, kernel.shape) for array in kernels[matches[0]])
        follower = consumers[name]
        channels = kernel.shape[2:] if kind == "DepthwiseConv2D" else kernel.shape[-1:]  # (in, multiplier) / (out,)
        folding = np.ones(channels)
        if len(follower) == 1 and type(layers[follower[0]]).__name__ == "BatchNormalization":
            folding = batchnorm_scale(layers[follower[0]]).reshape(channels)
        grids.append(Grid(layer, folding, kernel.astype(np.float64) * folding, integers, np.asarray(step)))
    return grids


def _rows(grid: Grid, inputs: np.ndarray) -> np.ndarray:
    """The layer's input as the rows its kernel multiplies: (positions, kh*kw*cin) for a conv, (positions,
    kh*kw, cin) for a depthwise, (samples, cin) for a dense layer."""
    from edgekit._tf import import_tf

    tf, _ = import_tf()
    if grid.kind == "Dense":
        return inputs.reshape(-1, inputs.shape[-1])
    height, width = grid.folded.shape[:2]
    strides = grid.layer.strides
    patches = tf.image.extract_patches(inputs, sizes=[1, height, width, 1], strides=[1, *strides, 1],
                                       rates=[1, *grid.layer.dilation_rate, 1],
                                       padding=grid.layer.padding.upper()).numpy()
    patches = patches.reshape(-1, patches.shape[-1])
    return patches.reshape(len(patches), height * width, -1) if grid.kind == "DepthwiseConv2D" else patches


class _LayerInputs:
    """The inputs of a functional model's layers on ``images``, in batches of ``BATCH``, computed once each: every
    layer runs once per batch, with the weights it has when a later layer first needs its output (so a layer
    rounded before that sees the rounded weights). Each batch goes through the same layer calls as
    ``tf_keras.Model(model.inputs, layer.input)(batch, training=False)`` would make, so the values are the same,
    but the network is not re-run from its input for every layer (that was quadratic in depth). A value is
    dropped once every layer that reads it has run."""

    def __init__(self, model, images: np.ndarray):
        from edgekit._tf import import_tf

        tf, _ = import_tf()
        self.order = [node for depth in sorted(model._nodes_by_depth, reverse=True)
                      for node in model._nodes_by_depth[depth] if not node.is_input]
        self.producer = {tensor: node for node in self.order for tensor in node.flat_output_ids}
        self.readers = Counter(tensor for node in self.order for tensor in node.flat_input_ids)
        self.flatten = tf.nest.flatten
        (source,) = model.inputs
        self.values = {str(id(source)): [tf.convert_to_tensor(images[start:start + BATCH])
                                         for start in range(0, len(images), BATCH)]}
        self.batches = len(self.values[str(id(source))])
        self.done: set[int] = set()
        self.held: set[int] = set()  # ids of the layers that must not run yet (not yet rounded)

    def of(self, layer) -> list[np.ndarray]:
        """``layer``'s input, per batch, running the layers it depends on that have not run yet."""
        (node,) = [node for node in self.order if node.layer is layer]
        (tensor,) = node.flat_input_ids
        needed, stack = set(), [tensor]
        while stack:  # the nodes whose outputs ``tensor`` depends on and that have not run
            producer = self.producer.get(stack.pop())
            if producer is not None and id(producer) not in self.done and id(producer) not in needed:
                needed.add(id(producer))
                stack.extend(producer.flat_input_ids)
        for step in self.order:
            if id(step) in needed:
                self._run(step)
        return [np.asarray(value, dtype=np.float32) for value in self.values[tensor]]

    def _run(self, node) -> None:
        if id(node.layer) in self.held:
            raise RuntimeError(f"layer {node.layer.name!r} would run before it is rounded")
        outputs = []  # per batch, the node's outputs flattened
        for batch in range(self.batches):
            arguments = {}
            for tensor in node.flat_input_ids:
                arguments.setdefault(tensor, []).append(self.values[tensor][batch])
            args, kwargs = node.map_arguments(arguments)
            outputs.append(self.flatten(node.layer(*args, **kwargs, training=False)))
        for tensor in node.flat_input_ids:
            self.readers[tensor] -= 1
            if not self.readers[tensor]:
                del self.values[tensor]
        for position, tensor in enumerate(node.flat_output_ids):
            self.values[tensor] = [flat[position] for flat in outputs]
        self.done.add(id(node))


def _grams(grid: Grid, rounded_in: list[np.ndarray], float_in: list[np.ndarray]
           ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The number of input rows, and sums over the batches of the layer's input (rounded, float) of
    X_rounded' X_rounded, X_rounded' X_float and X_float' X_float (per channel for a depthwise)."""
    rows = 0
    own = cross = floating_own = 0.0
    for rounded_batch, float_batch in zip(rounded_in, float_in):
        rounded, floating = (_rows(grid, batch) for batch in (rounded_batch, float_batch))
        if grid.kind == "DepthwiseConv2D":  # (positions, taps, channels) -> (channels, taps, positions)
            rounded, floating = (rows.astype(np.float64).transpose(2, 1, 0) for rows in (rounded, floating))
        else:
            rounded, floating = (rows.astype(np.float64).T for rows in (rounded, floating))
        rows += rounded.shape[-1]
        transposed = np.swapaxes(rounded, -1, -2), np.swapaxes(floating, -1, -2)
        own = own + rounded @ transposed[0]
        cross = cross + rounded @ transposed[1]
        floating_own = floating_own + floating @ transposed[1]
    return rows, own, cross, floating_own


class _Problem:
    """||X_float W - X_rounded W~||^2 for one layer through its Gram matrices, W~ = step * (floor + h)."""

    def __init__(self, grid: Grid, own: np.ndarray, cross: np.ndarray, floating_own: np.ndarray):
        self.depthwise = grid.kind == "DepthwiseConv2D"
        if self.depthwise:  # (h, w, c, m) -> (c, taps, m)
            shape = grid.folded.shape
            self.to_matrix = lambda a: a.reshape(-1, shape[2], shape[3]).transpose(1, 0, 2)
            self.from_matrix = lambda a: a.transpose(1, 0, 2).reshape(shape)
        else:
            shape = grid.folded.shape
            self.to_matrix = lambda a: a.reshape(-1, shape[-1])
            self.from_matrix = lambda a: a.reshape(shape)
        self.own, self.step = own, self.to_matrix(np.asarray(grid.step, dtype=np.float64))
        self.folded = self.to_matrix(grid.folded)
        self.target = cross @ self.folded  # X_rounded' X_float W
        self.constant = float(np.sum(self.folded * (floating_own @ self.folded)))  # ||X_float W||^2
        self.fast = own.astype(np.float32), self.target.astype(np.float32)  # for the many gradient steps

    def error(self, kernel: np.ndarray) -> float:
        """||X_float W - X_rounded W~||^2 = W~' G W~ - 2 W~' C W + W' F W, traced."""
        return float(np.sum(kernel * (self.own @ kernel)) - 2 * np.sum(kernel * self.target) + self.constant)

    def gradient(self, kernel: np.ndarray) -> np.ndarray:
        own, target = self.fast
        return 2 * (own @ kernel.astype(np.float32) - target)


def _rectified(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1) and its derivative."""
    sigmoid = 1 / (1 + np.exp(-v))
    stretched = sigmoid * (ZETA - GAMMA) + GAMMA
    inside = (stretched > 0) & (stretched < 1)
    return np.clip(stretched, 0, 1), np.where(inside, sigmoid * (1 - sigmoid) * (ZETA - GAMMA), 0.0)


def _optimise(problem: _Problem, steps: int) -> np.ndarray:
    """The up (1) / down (0) choice per weight, in the problem's matrix layout."""
    scaled = problem.folded / problem.step
    floor = np.floor(scaled)
    rest = np.clip(scaled - floor, 1e-4, 1 - 1e-4)
    v = -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1)  # h(V) starts at the weight's own fraction
    # The reconstruction term relative to round-to-nearest's, so the regulariser's weight means the same per layer.
    scale = max(problem.error(problem.step * np.round(scaled)), 1e-30)
    first, second = np.zeros_like(v), np.zeros_like(v)
    for step in range(1, steps + 1):
        h, dh = _rectified(v)
        grad = problem.gradient(problem.step * (floor + h)) * problem.step / scale
        progress = (step / steps - WARMUP) / (1 - WARMUP)
        if progress > 0:
            beta = BETA[0] + (BETA[1] - BETA[0]) * progress
            centred = 2 * h - 1
            # d/dh of mean(1 - |2h - 1|^beta)
            grad = grad - REGULARISER / h.size * beta * np.abs(centred) ** (beta - 1) * np.sign(centred) * 2
        grad = grad * dh
        first = 0.9 * first + 0.1 * grad
        second = 0.999 * second + 0.001 * grad ** 2
        v = v - LEARNING_RATE * (first / (1 - 0.9 ** step)) / (np.sqrt(second / (1 - 0.999 ** step)) + 1e-8)
    return floor + (_rectified(v)[0] >= 0.5)


def _keep_channel_maximum(integers: np.ndarray, grid: Grid) -> np.ndarray:
    """``integers`` (Keras layout) clipped to int8's symmetric range, with each output channel's largest weight
    at its nearest grid point, so that the converter computes the same step for the channel."""
    scaled = grid.folded / grid.step
    channels = scaled.reshape(-1, int(np.prod(scaled.shape[2:])) if grid.kind == "DepthwiseConv2D"
                              else scaled.shape[-1])
    chosen = np.clip(integers, -127, 127).reshape(channels.shape).copy()
    largest = np.argmax(np.abs(channels), axis=0)
    columns = np.arange(channels.shape[1])
    chosen[largest, columns] = np.clip(np.round(channels[largest, columns]), -127, 127)
    return chosen.reshape(integers.shape)


def adaround(model, grids: list[Grid], calibration: np.ndarray, *, images: int = IMAGES,
             steps: int = STEPS) -> dict:
    """Round every layer of ``grids`` (their ``model``, changed in place) AdaRound's way, in execution order, on
    ``images`` of ``calibration`` (normalised inputs). A layer whose chosen rounding reconstructs its
    output worse than round-to-nearest, or that those images show at too few rows, keeps round-to-nearest.
    Returns a report per layer."""
    import time

    from edgekit._tf import import_tf

    _, tf_keras = import_tf()
    started = time.perf_counter()
    reference = tf_keras.models.clone_model(model)  # the float model, for X_float
    reference.set_weights(model.get_weights())
    spread = np.unique(np.linspace(0, len(calibration) - 1, min(images, len(calibration))).round().astype(int))
    inputs = np.asarray(calibration, dtype=np.float32)[spread]  # evenly over the sample (it may be in class order)
    layers = []
    rounded_in, float_in = _LayerInputs(model, inputs), _LayerInputs(reference, inputs)
    rounded_in.held = {id(grid.layer) for grid in grids}
    for grid in grids:
        rows, *grams = _grams(grid, rounded_in.of(grid.layer), float_in.of(reference.get_layer(grid.layer.name)))
        problem = _Problem(grid, *grams)
        nearest = np.clip(np.round(grid.folded / grid.step), -127, 127)
        enough = rows >= MIN_ROWS_PER_INPUT * problem.own.shape[-1]
        chosen = _keep_channel_maximum(problem.from_matrix(_optimise(problem, steps)), grid) if enough else nearest
        errors = {name: problem.error(problem.to_matrix(kernel) * problem.step)
                  for name, kernel in (("nearest", nearest), ("adaround", chosen))}
        kept = errors["adaround"] < errors["nearest"]
        grid.write(chosen if kept else nearest)
        rounded_in.held.discard(id(grid.layer))
        layers.append({"layer": grid.layer.name, "weights": int(chosen.size), "input_rows": rows,
                       "rounded_other_way": int(np.sum(chosen != nearest)) if kept else 0,
                       "error_vs_nearest": round(errors["adaround"] / max(errors["nearest"], 1e-30), 4),
                       "kept_adaround": bool(kept)})
    ratios = [layer["error_vs_nearest"] for layer in layers]
    return {"method": "AdaRound (per-weight up/down minimising each layer's output error, layers in order)",
            "images": int(len(inputs)), "steps": steps, "layers": len(layers),
            "layers_kept_nearest": sum(not layer["kept_adaround"] for layer in layers),
            "weights_rounded_other_way": sum(layer["rounded_other_way"] for layer in layers),
            "median_error_vs_nearest": round(float(np.median(ratios)), 4) if ratios else None,
            "wall_s": round(time.perf_counter() - started, 1), "per_layer": layers}


def grid_mismatches(model, grids: list[Grid], int8_bytes: bytes) -> dict:
    """Where the conversion ``int8_bytes`` of ``model`` (its layers rounded through ``grids``) wrote other
    integers than the chosen ones, or put them on another step (both counted in weights): 0 integers when the
    converter's rounding lands on the choice. A step moves where the converter widens it so that an int32 bias
    fits: that width depends on the input's activation range, which the rounding shifts a little."""
    written = {grid.layer.name: grid for grid in converter_grids(model, int8_bytes)}
    chosen = [(grid, written[grid.layer.name]) for grid in grids if grid.chosen is not None]
    return {"weights": sum(int(grid.chosen.size) for grid, _ in chosen),
            "integers_differing": sum(int(np.sum(new.integers != grid.chosen)) for grid, new in chosen),
            "steps_differing": sum(int(np.sum(~np.isclose(new.step, grid.step, rtol=1e-5, atol=0)))
                                   for grid, new in chosen)}
