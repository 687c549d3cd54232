"""Empirical bias correction of a full-integer int8 .tflite (as NNCF's FastBiasCorrection and AIMET's
empirical bias correction do): quantizing a layer's weights and inputs shifts the mean of its
outputs per channel, and the shifts add up through the network. Each conv / depthwise / dense
layer's int32 bias is moved, in execution order, by the difference between its per-channel mean
output in the int8 model (with the layers before it already corrected) and in the float model, on
calibration images. Layer outputs are compared by tensor name (the converter names an op's output
the same in the float and the int8 model); the measurement is taken after the fused activation
(ReLU6), which the converter folds into the op, so for clipped channels the shift is approximate.

Only the bias buffers change: the bytes are edited in place (the flatbuffer's vectors are views),
so the model's size, ops and quantization parameters stay exactly those of the plain int8 model.

The shifts found on one conversion can be re-applied to another conversion of the same network
(:meth:`BiasShifts.apply`): the accuracy guard corrects plain int8 once and re-applies its shifts to
each candidate with layers kept float, whose int8 layers keep their names and scales, instead of
measuring about one int8 run of 64 images per layer again for every candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CORRECTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
SAMPLES = 64  # NNCF's FastBiasCorrection uses 100; one int8 run per corrected layer makes this the cost knob


@dataclass(frozen=True)
class BiasedLayer:
    """An int8 op with an int32 bias: where its output and bias live, and the bias' per-channel scales."""

    output_name: str
    reference_name: str  # the float model's name for this output (the int8 name, or its DEQUANTIZE's output)
    bias_buffer: int
    bias_scales: np.ndarray


def _biased_layers(graph) -> list[BiasedLayer]:
    """The graph's conv/depthwise/dense ops in execution order whose bias is a quantized int32 constant of its own."""
    main = graph.main
    dequantized = {op.inputs[0]: main.tensors[op.outputs[0]].name for op in main.operators if op.op == "DEQUANTIZE"}
    layers, seen_buffers = [], set()
    for op in main.operators:
        if op.op not in CORRECTED_OPS or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        bias, output = main.tensors[op.inputs[2]], main.tensors[op.outputs[0]]
        if bias.dtype != "INT32" or not bias.scale or bias.buffer in seen_buffers or not output.scale:
            continue
        seen_buffers.add(bias.buffer)
        layers.append(BiasedLayer(output.name, dequantized.get(op.outputs[0], output.name), bias.buffer,
                                  np.asarray(bias.scale, dtype=np.float64)))
    return layers


def _channel_means(model_bytes: bytes, inputs: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Per-channel mean (last axis, dequantized) of the named tensors over ``inputs``, run one at a time
    with every intermediate tensor kept (builtin kernels: a delegate would hide them)."""
    from edgekit.runtime.backends import tflite_runtime_module

    _, module = tflite_runtime_module()
    interpreter = module.Interpreter(
        model_content=model_bytes, num_threads=1, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    details = {d["name"]: d for d in interpreter.get_tensor_details()}
    model_input = interpreter.get_input_details()[0]
    sums = {name: 0.0 for name in names}
    for sample in inputs:
        value = sample[None].astype(np.float32)
        scale, zero = model_input["quantization"]
        if model_input["dtype"] != np.float32:
            info = np.iinfo(model_input["dtype"])
            value = np.clip(np.round(value / scale + zero), info.min, info.max).astype(model_input["dtype"])
        interpreter.set_tensor(model_input["index"], value)
        interpreter.invoke()
        for name in names:
            tensor = interpreter.get_tensor(details[name]["index"])
            scale, zero = details[name]["quantization"]
            values = tensor.astype(np.float64)
            if tensor.dtype != np.float32:
                values = (values - zero) * scale
            sums[name] = sums[name] + values.reshape(-1, values.shape[-1]).mean(0)
    return {name: total / len(inputs) for name, total in sums.items()}


def _remove_shift(data: bytearray, layer: BiasedLayer, shift: np.ndarray) -> None:
    """Move the layer's int32 bias in ``data`` (in place) so its output mean moves by ``-shift``."""
    from edgekit.runtime.tflite_file import buffer_view

    bias = buffer_view(data, layer.bias_buffer, np.int32)
    bias -= np.round(shift / layer.bias_scales).astype(np.int32)


@dataclass(frozen=True)
class BiasShifts:
    """The per-channel output shifts (in output units) that bias correction removed, by int8 output tensor
    name, with the float model's per-channel means on the same calibration images."""

    shifts: dict[str, np.ndarray]
    float_means: dict[str, np.ndarray]
    inputs: np.ndarray

    def apply(self, int8_model: bytes) -> tuple[bytes, dict]:
        """``int8_model`` (another conversion of the same network, e.g. with layers kept float) with these
        shifts removed from the biases of its int8 layers of the same name; a report of how many, and the mean
        absolute per-channel shift against float over those layers before and after (two int8 runs)."""
        from edgekit.runtime.tflite_file import buffer_view, parse_tflite

        data = bytearray(int8_model)
        layers = [layer for layer in _biased_layers(parse_tflite(int8_model)) if layer.output_name in self.shifts
                  and buffer_view(data, layer.bias_buffer, np.int32).size == self.shifts[layer.output_name].size]
        for layer in layers:
            _remove_shift(data, layer, self.shifts[layer.output_name])
        names = [layer.output_name for layer in layers]
        report = {"layers_corrected": len(layers)}
        for when, model in (("before", int8_model), ("after", bytes(data))):
            report[f"mean_abs_channel_shift_{when}"] = self._mean_abs_shift(model, names)
        return bytes(data), report

    def _mean_abs_shift(self, model: bytes, names: list[str]) -> float:
        if not names:
            return 0.0
        means = _channel_means(model, self.inputs, names)
        return round(float(np.mean([np.mean(np.abs(means[n] - self.float_means[n])) for n in names])), 6)


def correct_int8_biases(int8_model: bytes, float_model: bytes, inputs: np.ndarray,
                        *, samples: int = SAMPLES) -> tuple[bytes, dict]:
    """``int8_model`` with each conv/depthwise/dense bias corrected so that its per-channel mean output on
    the first ``samples`` of ``inputs`` (normalised calibration images) matches ``float_model``'s (the same
    network as a float32 .tflite). Returns the new bytes and a report: layers corrected, and the mean absolute
    per-channel output shift against float over those layers before and after."""
    corrected, report, _ = correct_and_keep_shifts(int8_model, float_model, inputs, samples=samples)
    return corrected, report


def correct_and_keep_shifts(int8_model: bytes, float_model: bytes, inputs: np.ndarray,
                            *, samples: int = SAMPLES) -> tuple[bytes, dict, BiasShifts]:
    """:func:`correct_int8_biases`, also returning the shifts removed, to re-apply to other conversions."""
    from edgekit.runtime.backends import tflite_runtime_module
    from edgekit.runtime.tflite_file import parse_tflite

    data = bytearray(int8_model)
    _, module = tflite_runtime_module()
    float_names = {d["name"] for d in module.Interpreter(model_content=float_model).get_tensor_details()}
    layers = [layer for layer in _biased_layers(parse_tflite(int8_model)) if layer.reference_name in float_names]
    inputs = np.asarray(inputs, dtype=np.float32)[:samples]
    names = [layer.output_name for layer in layers]
    reference = dict(zip(names, _channel_means(float_model, inputs, [layer.reference_name for layer in layers])
                         .values()))
    before = _channel_means(bytes(data), inputs, names)
    shifts_before = [float(np.mean(np.abs(before[n] - reference[n]))) for n in names]
    shifts = {}
    for position, layer in enumerate(layers):
        measured = before if position == 0 else _channel_means(bytes(data), inputs, [layer.output_name])
        shifts[layer.output_name] = measured[layer.output_name] - reference[layer.output_name]
        _remove_shift(data, layer, shifts[layer.output_name])
    after = _channel_means(bytes(data), inputs, names)
    shifts_after = [float(np.mean(np.abs(after[n] - reference[n]))) for n in names]
    report = {"method": "empirical bias correction (per-channel mean output vs float, layer by layer)",
              "images": int(len(inputs)), "layers_corrected": len(layers),
              "mean_abs_channel_shift_before": round(float(np.mean(shifts_before)), 6) if names else 0.0,
              "mean_abs_channel_shift_after": round(float(np.mean(shifts_after)), 6) if names else 0.0,
              "per_layer": [{"tensor_name": n, "shift_before": round(b, 6), "shift_after": round(a, 6)}
                            for n, b, a in zip(names, shifts_before, shifts_after)]}
    return bytes(data), report, BiasShifts(shifts, reference, inputs)
