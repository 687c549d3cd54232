"""Activation ranges chosen by another estimator than the calibration min/max, before int8 quantization.

TFLite's calibrator gives every activation tensor the min/max it saw on the calibration images, and the
quantizer spreads 256 levels over that range: one outlier activation coarsens the grid of the whole tensor.
The field clips instead (NNCF's range estimators, AIMET's percentile/MSE encodings, TensorRT's percentile
calibrator). Here the calibrated model (``_experimental_calibrate_only``, float ops carrying each tensor's
min/max) is run once more over the same calibration images to histogram every calibrated tensor, each
range is narrowed by the chosen estimator, and the edited model goes to ``mlir_quantize`` as before, so the
quantizer still imposes its own constraints (same scale across concat/pooling, the fixed softmax output).

Kept as calibrated: the model inputs (the photo's full range is real) and the logits a softmax reads
(clipping the winner's logit would tie it with the runner-up).

Runs inside the converter's child process (TensorFlow imported there).
"""

from __future__ import annotations

import numpy as np

ESTIMATORS = ("minmax", "percentile", "mse")
DEFAULT_PERCENTILE = 99.99
BINS = 2048
LEVELS = 255  # int8 steps across a range
MSE_CLIP_FRACTIONS = tuple(0.9 ** i for i in range(30))  # 1.0 .. 0.047: down to a 20x narrower range


def _calibrated(model) -> dict[int, tuple[float, float]]:
    """Tensor index -> calibrated (min, max) of each activation of the first subgraph that may be narrowed."""
    from tensorflow.lite.python import schema_py_generated as schema

    graph = model.subgraphs[0]
    softmax = {index for index, code in enumerate(model.operatorCodes)
               if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.SOFTMAX}
    kept = set(graph.inputs.tolist())
    kept.update(int(op.inputs[0]) for op in graph.operators if op.opcodeIndex in softmax)
    ranges = {}
    for index, tensor in enumerate(graph.tensors):
        quant = tensor.quantization
        if index in kept or quant is None or quant.min is None or quant.max is None or len(quant.min) != 1:
            continue
        if model.buffers[tensor.buffer].data is not None:  # a constant (weights): quantized by the converter
            continue
        ranges[index] = (float(quant.min[0]), float(quant.max[0]))
    return ranges


def _histograms(calibrated_bytes: bytes, ranges: dict[int, tuple[float, float]],
                inputs: np.ndarray) -> dict[int, np.ndarray]:
    """Per tensor, BINS counts of its values over the calibration images, on its calibrated [min, max]."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=calibrated_bytes, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    counts = {index: np.zeros(BINS, dtype=np.int64) for index in ranges}
    for sample in inputs:
        interpreter.set_tensor(input_index, sample[None].astype(np.float32))
        interpreter.invoke()
        for index, (low, high) in ranges.items():
            values = interpreter.get_tensor(index).ravel()
            width = max(high - low, 1e-12) / BINS
            bins = np.clip(((values - low) / width).astype(np.int64), 0, BINS - 1)
            counts[index] += np.bincount(bins, minlength=BINS)
    return counts


def _percentile_range(counts: np.ndarray, low: float, high: float, percentile: float) -> tuple[float, float]:
    """The bin edges holding all but (100 - percentile)% of the values at each end."""
    edges = np.linspace(low, high, BINS + 1)
    cumulative = np.cumsum(counts) / max(counts.sum(), 1)
    tail = 1.0 - percentile / 100.0
    first = int(np.searchsorted(cumulative, tail, side="right"))
    last = int(np.searchsorted(cumulative, 1.0 - tail, side="left"))
    return float(edges[first]) if low < 0 else low, float(edges[min(last + 1, BINS)])


def quantization_mse(counts: np.ndarray, low: float, high: float, clip_low: float, clip_high: float) -> float:
    """Expected squared int8 error of the histogrammed values on the grid [clip_low, clip_high]: rounding error
    (step^2 / 12) inside it, the distance to the bound outside."""
    centres = low + (np.arange(BINS) + 0.5) * (high - low) / BINS
    step = (clip_high - clip_low) / LEVELS
    inside = (centres >= clip_low) & (centres <= clip_high)
    clipped = np.where(centres > clip_high, centres - clip_high, np.where(centres < clip_low, clip_low - centres, 0.0))
    squared = counts[inside].sum() * step * step / 12.0 + (counts * clipped * clipped).sum()
    return float(squared / max(counts.sum(), 1))


def _mse_range(counts: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The range [low * f, high * f] (f in MSE_CLIP_FRACTIONS) with the smallest expected quantization error."""
    fraction = min(MSE_CLIP_FRACTIONS, key=lambda f: quantization_mse(counts, low, high, low * f, high * f))
    return low * fraction, high * fraction


def narrowed_ranges(calibrated_bytes: bytes, inputs: np.ndarray, estimator: str,
                    percentile: float = DEFAULT_PERCENTILE) -> tuple[bytes, dict]:
    """The calibrated model with each narrowable tensor's range set by ``estimator``, and a summary of the change
    (tensors narrowed, median and smallest width as a share of the calibrated one)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated_bytes))
    ranges = _calibrated(model)
    counts = _histograms(calibrated_bytes, ranges, inputs) if estimator != "minmax" else {}
    shares = []
    for index, (low, high) in ranges.items():
        if estimator == "minmax" or high <= low:
            continue
        new_low, new_high = (_percentile_range(counts[index], low, high, percentile) if estimator == "percentile"
                             else _mse_range(counts[index], low, high))
        new_low, new_high = min(new_low, 0.0), max(new_high, 0.0)  # the grid must hold zero
        quant = model.subgraphs[0].tensors[index].quantization
        quant.min, quant.max = np.array([new_low], np.float32), np.array([new_high], np.float32)
        shares.append((new_high - new_low) / (high - low))
    report = {"estimator": estimator, "tensors": len(ranges), "images": int(len(inputs)) if counts else 0,
              "narrowed": int(sum(share < 0.999 for share in shares)),
              "median_width_share": round(float(np.median(shares)), 4) if shares else 1.0,
              "smallest_width_share": round(float(np.min(shares)), 4) if shares else 1.0}
    if estimator == "percentile":
        report["percentile"] = percentile
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), report
