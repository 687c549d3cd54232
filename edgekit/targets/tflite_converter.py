"""Keras -> TFLite: static batch-1 SavedModel export, conversion in a child process, metadata, tensor specs.

Why this shape (measured, see DESIGN.md):
- ``from_saved_model`` converts in 1-3 s and quietly; ``from_keras_model`` takes 6-12 s and prints
  hundreds of lines. The SavedModel signature is traced with batch 1, because Keras' default
  export has a dynamic batch (-1) that the Edge TPU compiler rejects.
- The converter can segfault (QAT models with NaN weights did, 3 of 3). It therefore runs in a child
  process (:func:`edgekit.child_process.run_isolated`), so a crash becomes a :class:`ConversionError`,
  and weights are checked to be finite before conversion is even tried.

Everything TensorFlow happens inside functions (import-time cheap).
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import ConversionError, ModelFileError, UsageError, ValidationError
from edgekit.targets.activation_ranges import DEFAULT_PERCENTILE, ESTIMATORS

# sparse_float32: float32 with pruned weights stored sparse (+ DENSIFY ops), which XNNPACK may run with sparse kernels.
MODES = ("float32", "sparse_float32", "float16", "dynamic", "int8", "int16x8")
IO_DTYPES = ("float32", "int8", "uint8")
CONVERT_TIMEOUT_S = 900
DEBUGGER_SAMPLES = 64  # the per-layer RMSE averages every element of a tensor; 200 images took 10 min on 2 busy cores
SIGNATURE_INPUT = "input"
SIGNATURE_OUTPUT = "probabilities"


def check_finite_weights(model, *, what: str) -> None:
    """Refuse a model with NaN/inf weights before the converter (which may crash on them) sees it."""
    bad = [weight.name for weight in model.weights
           if np.asarray(weight.numpy()).dtype.kind == "f" and not np.all(np.isfinite(weight.numpy()))]
    if bad:
        raise ConversionError(f"{what} has non-finite weights in {len(bad)} tensor(s), first: {bad[0]}",
                              fix="lower the learning rate or fine-tune epochs (training diverged), then retry")


def export_saved_model(model, directory: Path) -> None:
    """Save ``model`` as a SavedModel whose only signature takes a float32 [1, H, W, 3] input.

    Only the signature and the variables it reads are saved, not the Keras model object: saving that
    traces every layer's call functions for Keras' own reloading, which the converter never uses
    (MobileNetV2 at 64 px: 13.4 s of CPU instead of 2.5 s, and the converter then reads 12 MB instead
    of 9.5 MB, 11.5 s instead of 3.8 s; the .tflite is byte-identical).
    """
    from edgekit._tf import import_tf

    tf, _ = import_tf()
    height, width, channels = (int(d) for d in model.input_shape[1:4])

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, channels], tf.float32, name=SIGNATURE_INPUT)])
    def serve(x):
        return {SIGNATURE_OUTPUT: model(x, training=False)}

    module = tf.Module()
    if hasattr(model, "trackable"):  # a SavedModelFunction: its variables live in its loaded object
        module.model = model.trackable
    else:
        module.variables_read = list(model.weights)  # tracked (tf.Module wraps the list) so save finds them
    module.serve = serve
    tf.saved_model.save(module, str(directory), signatures={"serving_default": serve})


def _run_child(function, *args, what: str):
    """``function(*args)`` in a child process with legacy tf-keras; a crash there is a ConversionError."""
    from edgekit.child_process import run_isolated

    return run_isolated(function, *args, what=what, timeout=CONVERT_TIMEOUT_S,
                        env={"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
                        fix="check that the model's weights and inputs are sane; rerun with --debug for the log")


def _converter(tf, saved_model: str, representative: np.ndarray | None, job: dict[str, Any]):
    """A TFLiteConverter configured for ``job['mode']`` (runs in the child)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    mode, io_dtype = job["mode"], job.get("io_dtype", "float32")
    if representative is not None and mode in ("int8", "int16x8"):
        converter.representative_dataset = lambda: ([sample[None]] for sample in representative)
    if mode == "sparse_float32":
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    elif mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if job.get("denylisted_nodes"):
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)  # float kernels for the kept-float layers
        converter.target_spec.supported_ops = ops
        if io_dtype != "float32":
            converter.inference_input_type = converter.inference_output_type = getattr(tf, io_dtype)
    elif mode == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if io_dtype != "float32":
            converter.inference_input_type = converter.inference_output_type = tf.int16
    return converter


def _child_convert(saved_model: str, representative: np.ndarray | None,
                   jobs: list[dict[str, Any]]) -> list[tuple[bytes, dict | None, tuple[bytes, dict | None] | None]]:
    """Child entry point: for each conversion job (one TF import for all) its bytes, the activation range report
    of a job whose ranges another estimator chose (else None), and the calibration it made, if it made one.

    A job with ``denylisted_nodes`` is quantized selectively: those tensors' ops stay float. A job carrying
    ``calibration`` (a calibrated model and its range report, from an earlier job) only quantizes it.
    """
    from edgekit._tf import import_tf

    tf, _ = import_tf()
    results, calibration = [], None
    for job in jobs:
        selective_or_narrowed = job.get("denylisted_nodes") or job.get("activation_ranges", "minmax") != "minmax"
        if job["mode"] == "int8" and selective_or_narrowed:
            job = {"calibration": calibration} | job
            data, report, made = _calibrated_int8(tf, saved_model, job, representative)
            calibration = calibration or made
            results.append((data, report, made))
        else:
            results.append((_converter(tf, saved_model, representative, job).convert(), None, None))
    return results


def _calibration(tf, saved_model: str, job: dict[str, Any],
                 representative: np.ndarray) -> tuple[tuple[bytes, dict | None], tuple[bytes, dict | None] | None]:
    """The job's calibrated float model (each tensor carrying its min/max), its activation ranges narrowed when the
    job asks (:mod:`edgekit.targets.activation_ranges`), with the range report (None for min/max); and the same
    pair again when it was made here, None when the job carried it.

    The calibrated model depends only on the model, the images and the range estimator, not on which layers stay
    float, so a job carrying ``calibration`` skips the two passes over the images (the guard converts up to a
    dozen candidates from one). MobileNetV2 160, 200 images: a candidate in 0.4 s instead of 18 s (quiet CPU),
    byte-identical (benchmarks/guard_calibration_reuse.py).
    """
    from edgekit.targets.activation_ranges import narrowed_ranges

    if job.get("calibration"):
        return job["calibration"], None
    converter = _converter(tf, saved_model, representative, job)
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True
    made = converter.convert(), None
    if job.get("activation_ranges", "minmax") != "minmax":
        made = narrowed_ranges(made[0], representative, job["activation_ranges"], job["percentile"])
    return made, made


def _calibrated_int8(tf, saved_model: str, job: dict[str, Any],
                     representative: np.ndarray) -> tuple[bytes, dict | None, tuple[bytes, dict | None] | None]:
    """Calibrate (:func:`_calibration`), then quantize all but the denylisted tensors' ops: what the quantization
    debugger's ``get_nondebug_quantized_model`` does, minus its constructor, which insists on leaving layers to
    verify. Returns the bytes, the range report and the calibration made here (None when the job carried one)."""
    from tensorflow.lite.python import convert as tflite_convert

    (calibrated, report), made = _calibration(tf, saved_model, job, representative)
    quantized = tflite_convert.mlir_quantize(  # per-channel: edgekit never sets the converter's opt-out
        calibrated, disable_per_channel=False, fully_quantize=job["io_dtype"] != "float32",
        denylisted_nodes=list(job["denylisted_nodes"]))
    return quantized, report, made


def _child_layer_stats(saved_model: str, representative: np.ndarray,
                       job: dict[str, Any]) -> tuple[list[dict[str, Any]], tuple[bytes, dict | None] | None]:
    """Child entry point: per-layer quantization error from the TFLite quantization debugger, on the job's
    activation ranges (:func:`_calibration`; the one made here is returned too, else None).

    The debugger calibrates with min/max when given a converter; given the debug model instead (quantized with
    NumericVerify ops, as its constructor would build it), it scores the ranges the guard's candidates will have.
    """
    import csv
    import io

    from tensorflow.lite.python import convert as tflite_convert

    from edgekit._tf import import_tf

    tf, _ = import_tf()
    (calibrated, _), made = _calibration(tf, saved_model, job, representative)
    debug_model = tflite_convert.mlir_quantize(calibrated, disable_per_channel=False, fully_quantize=False,
                                               enable_numeric_verify=True)
    samples = representative[:DEBUGGER_SAMPLES]
    debugger = tf.lite.experimental.QuantizationDebugger(
        quant_debug_model_content=debug_model, debug_dataset=lambda: ([sample[None]] for sample in samples))
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    rows = []
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        scale = float(row["scale"]) or 1e-12
        rows.append({"tensor_name": row["tensor_name"], "op_name": row["op_name"],
                     "rmse_over_scale": float(np.sqrt(float(row["mean_squared_error"]))) / scale,
                     "mean_error": float(row["mean_error"]), "scale": float(row["scale"])})
    return rows, made


# Conversions that read nothing but the model: their bytes are a function of the model's content and the job.
SHAREABLE_MODES = ("float32", "sparse_float32", "float16", "dynamic")


@dataclass
class SharedConversions:
    """The conversions :func:`sharing_conversions` keeps, by (model content digest, job), and how often one was
    reused instead of converted again."""
    by_key: dict[tuple, bytes] = field(default_factory=dict)
    reused: int = 0


_shared: SharedConversions | None = None


@contextmanager
def sharing_conversions() -> Iterator[SharedConversions]:
    """Inside the block, a model converted once (float32, float16, dynamic, sparse) is not converted again.

    A recipe's compress stages each convert the float model to float32 (their size baseline) and its
    export:float32 converts it once more; each conversion costs a SavedModel export and a converter run.
    The key is the model's content (architecture JSON and every weight's bytes, see :func:`model_digest`)
    plus the job, so a model changed in place (pruned, clustered) is converted anew. Nested blocks share
    the outermost one's conversions.
    """
    global _shared
    if _shared is not None:
        yield _shared
        return
    _shared = SharedConversions()
    try:
        yield _shared
    finally:
        _shared = None


def model_digest(model) -> str | None:
    """sha256 of a tf-keras model's architecture and weights (what a conversion reads); None when the model
    has no Keras config (a loaded SavedModel function), which is then never shared."""
    try:
        config = model.to_json()
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return None
    digest = hashlib.sha256(config.encode())
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


class PreparedModel:
    """A Keras model exported once to a static batch-1 SavedModel (when a conversion needs it), ready for several
    conversions; inside :func:`sharing_conversions` a conversion done before on the same content is reused."""

    def __init__(self, model, *, what: str, representative: np.ndarray | None = None,
                 activation_ranges: str = "minmax", percentile: float = DEFAULT_PERCENTILE):
        """``activation_ranges``: how every int8 conversion sets its activation ranges from the representative
        images (:mod:`edgekit.targets.activation_ranges`; ``percentile`` for its percentile estimator)."""
        if activation_ranges not in ESTIMATORS:
            raise UsageError(f"unknown activation range estimator {activation_ranges!r}",
                             fix=f"use one of {', '.join(ESTIMATORS)}")
        check_finite_weights(model, what=what)
        self.activation_ranges, self.percentile = activation_ranges, percentile
        self.what = what
        self.model = model
        self._tmp = tempfile.TemporaryDirectory(prefix="edgekit-tflite-")
        self.root = Path(self._tmp.name)
        self.representative = None if representative is None else np.asarray(representative, dtype=np.float32)
        self.range_reports: list[dict] = []
        self._calibration: tuple[bytes, dict | None] | None = None  # see _calibrated_int8

    def _saved_model(self) -> str:
        """The SavedModel folder, exported on first use."""
        folder = self.root / "saved_model"
        if not folder.is_dir():
            export_saved_model(self.model, folder)
        return str(folder)

    @cached_property
    def digest(self) -> str | None:
        """The weights' content hash, computed only for a conversion that can be shared (hashing costs ~1 s)."""
        return model_digest(self.model)

    def _shared_key(self, job: dict[str, Any]) -> tuple | None:
        if _shared is None or job["mode"] not in SHAREABLE_MODES or job["denylisted_nodes"] or self.digest is None:
            return None
        return self.digest, job["mode"], job["io_dtype"]

    def __enter__(self) -> PreparedModel:
        return self

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()

    def _job(self, mode: str, io_dtype: str, denylisted_nodes: tuple[str, ...] = ()) -> dict[str, Any]:
        if mode not in MODES:
            raise UsageError(f"unknown TFLite mode {mode!r}", fix=f"use one of {', '.join(MODES)}")
        if io_dtype not in IO_DTYPES:
            raise UsageError(f"--io-dtype {io_dtype!r} is not supported", fix=f"use one of {', '.join(IO_DTYPES)}")
        if mode in ("int8", "int16x8") and self.representative is None:
            raise UsageError(f"{mode} conversion needs representative (calibration) images",
                             fix="pass --calibration DIR")
        return {"mode": mode, "io_dtype": io_dtype, "denylisted_nodes": list(denylisted_nodes),
                "activation_ranges": self.activation_ranges if mode == "int8" else "minmax",
                "percentile": self.percentile}

    def convert_many(self, jobs: list[tuple[str, str, tuple[str, ...]]]) -> list[bytes]:
        """Bytes for each ``(mode, io_dtype, denylisted_nodes)``, all converted in one child process; the range
        report of each int8 conversion whose activation ranges were narrowed is appended to ``range_reports``."""
        requests = [self._job(mode, io_dtype, deny) for mode, io_dtype, deny in jobs]
        keys = [self._shared_key(request) for request in requests]
        results: list[bytes | None] = [_shared.by_key.get(key) if key else None for key in keys]
        missing = [i for i, data in enumerate(results) if data is None]
        if _shared is not None:
            _shared.reused += len(results) - len(missing)
        if missing:
            modes = ", ".join(jobs[i][0] for i in missing)
            sent = [self._carrying_calibration(requests[i]) for i in missing]
            converted = _run_child(_child_convert, self._saved_model(), self.representative, sent,
                                   what=f"TFLite {modes} conversion of {self.what}")
            for i, (data, report, calibration) in zip(missing, converted):
                results[i] = data
                self._calibration = self._calibration or calibration
                if report is not None:
                    self.range_reports.append(report)
                if keys[i] and _shared is not None:
                    _shared.by_key[keys[i]] = data
        return results

    def convert(self, mode: str, *, io_dtype: str = "float32", denylisted_nodes: tuple[str, ...] = ()) -> bytes:
        """TFLite flatbuffer bytes for ``mode``; ``denylisted_nodes`` (tensor names) stay float in int8."""
        return self.convert_many([(mode, io_dtype, tuple(denylisted_nodes))])[0]

    def layer_stats(self) -> list[dict[str, Any]]:
        """Per-layer int8 quantization error (RMSE / scale) under this model's activation ranges, worst first."""
        rows, calibration = _run_child(_child_layer_stats, self._saved_model(), self.representative,
                                       self._carrying_calibration(self._job("int8", "float32")),
                                       what=f"quantization debugger on {self.what}")
        self._calibration = self._calibration or calibration
        return sorted(rows, key=lambda row: -row["rmse_over_scale"])

    def _carrying_calibration(self, job: dict[str, Any]) -> dict[str, Any]:
        """An int8 ``job`` with the calibration an earlier one made (see :func:`_calibration`), to skip its own."""
        return job | {"calibration": self._calibration} if self._calibration and job["mode"] == "int8" else job


def convert_keras_to_tflite(model, *, out_path: Path | None = None, mode: str = "float32",
                            representative: np.ndarray | None = None, io_dtype: str = "float32",
                            what: str = "the model") -> bytes:
    """Convert a tf-keras model to TFLite (static batch 1, in a child process); write ``out_path`` atomically if given."""
    from edgekit.artifacts import write_bytes_atomic

    with PreparedModel(model, what=what, representative=representative) as prepared:
        data = prepared.convert(mode, io_dtype=io_dtype)
    if out_path is not None:
        write_bytes_atomic(Path(out_path), data)
    return data


def embed_metadata(model_bytes: bytes, *, labels: list[str], preprocessing: dict[str, Any]) -> bytes:
    """Labels and normalisation inside the .tflite, so the runtime needs no side files."""
    from edgekit.runtime.metadata import embed_tflite_metadata, make_metadata

    return embed_tflite_metadata(model_bytes, make_metadata(labels, preprocessing))


def run_tflite(model_bytes: bytes, inputs: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Float outputs of freshly converted bytes on normalised inputs, through the runtime core
    (:func:`edgekit.runtime.backends.run_float`); bytes LiteRT cannot load are a ValidationError."""
    from edgekit.runtime.backends import run_float

    try:
        return run_float(model_bytes, inputs, threads=threads)
    except ModelFileError as exc:
        raise ValidationError(f"the converted model does not load in LiteRT: {exc.message.splitlines()[-1]}",
                              fix="use another quantization mode (e.g. --int8 instead of --int16x8)") from exc


def tensor_specs(model_bytes: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input and output tensor specs (shape, dtype, quantization scale/zero point) as stored in the manifest."""
    from edgekit.runtime.backends import tflite_io_specs

    model_input, model_output = tflite_io_specs(model_bytes)
    return model_input.to_manifest(), model_output.to_manifest()


def gzip_size(data: bytes) -> int:
    """Compressed size: what pruning and clustering actually save (zeros and repeated values compress)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))
