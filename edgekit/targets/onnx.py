"""Export to ONNX (tf2onnx), optionally int8-quantized for onnxruntime, validated against the parent.

Flow: Keras parent -> tf2onnx (static batch-1 input) -> optional onnxslim -> optional quantization
-> labels + preprocessing in ``metadata_props`` -> ``onnx.checker`` (full check) -> run the result
in a *subprocess* on sample images and compare with the parent's outputs -> write model.onnx and
its manifest atomically. An existing float ONNX artifact can also be the parent (to quantize it).

``--int8`` is onnxruntime static QDQ quantization after ``quant_pre_process``: per-channel int8
weights, uint8 activations, calibrated on images; Softmax is left in float, because quantizing
its output collapses the probabilities to a couple of levels. Weights use the 7-bit range
(``reduce_range``): on x86 CPUs without VNNI (AVX2 only) onnxruntime's fused uint8 x int8 Conv
kernel adds products in int16 pairs (VPMADDUBSW), which saturate with full-range per-channel
weights (255 * 127 * 2 > 32767) and wrecked the outputs (top-1 agreement 0.23 with the parent);
7-bit weights (|w| <= 64) keep every pair in range (255 * 64 * 2 < 32767) on any CPU.
``--dynamic`` exists for completeness but is 3-11x slower than fp32 for CNNs on CPU (DESIGN.md).

Run as ``python -m edgekit.targets.onnx run MODEL IN.npz OUT.npz`` it is the validation worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.artifacts import Artifact, Manifest, Preprocessing, library_versions, parent_record, write_artifact
from edgekit.errors import ConversionError, ModelFileError, UsageError
from edgekit.progress import status
from edgekit.targets.common import check_out_dir, compare_to_parent, labelled_accuracy, load_parent, sample_images, validation_set

if TYPE_CHECKING:
    from edgekit.importer import ImportOptions

MODEL_FILE = "model.onnx"
DEFAULT_OPSET = 17
WORKER_TIMEOUT_S = 600
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def export_onnx(model: Path, *, out_dir: Path, opset: int = DEFAULT_OPSET, int8: bool = False, dynamic: bool = False,
                calibration: Path | None = None, calibration_samples: int | None = None,
                calibrate_method: str | None = None, simplify: bool = False, seed: int = 0,
                trust: bool = False, import_options: ImportOptions | None = None) -> Artifact:
    """Write ``out_dir/model.onnx`` + manifest from a Keras/SavedModel (or float ONNX) artifact; raise if it disagrees."""
    parent = load_parent(model, formats=("keras", "savedmodel", "onnx"), target="onnx", out_dir=out_dir,
                         import_options=import_options)
    if parent.manifest.format == "onnx" and parent.manifest.extra.get("quantization"):
        raise UsageError(f"{parent.path} is already quantized", fix="export from its float parent instead")
    out_dir = check_out_dir(out_dir, parent)
    if int8 and dynamic:
        raise UsageError("int8 and dynamic quantization cannot be combined", fix="choose one")
    if (calibrate_method or "minmax") not in _METHODS:
        raise UsageError(f"unknown calibrate method {calibrate_method!r}", fix=f"use one of {', '.join(_METHODS)}")
    preprocessing = parent.manifest.preprocessing_spec()
    calibration_dir = _calibration_dir(parent, calibration) if int8 else None
    checks = validation_set(parent, preprocessing, calibration_dir, seed=seed)
    samples, sample_source = checks.inputs, checks.source

    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as work_name:
        work = Path(work_name)
        nchw = False
        if parent.manifest.format != "onnx":
            proto, reference, input_name = _convert_keras(parent, preprocessing, samples, opset=opset, trust=trust)
        else:
            import onnx

            from edgekit.runtime.backends import is_nchw

            proto = onnx.load(str(parent.path))
            input_name = proto.graph.input[0].name
            nchw = is_nchw(tuple(d.dim_value or -1 for d in proto.graph.input[0].type.tensor_type.shape.dim))
            reference = run_onnx_subprocess(parent.path, samples)
        if simplify:
            proto = _simplify(proto)
        candidate = work / "float.onnx"
        _save(proto, candidate)
        quantization = None
        if int8:
            candidate, quantization = _quantize_static(
                candidate, work, input_name=input_name, folder=calibration_dir, preprocessing=preprocessing,
                count=calibration_samples or 200, method=calibrate_method or "minmax", seed=seed, nchw=nchw)
        elif dynamic:
            candidate, quantization = _quantize_dynamic(candidate, work)
        final = work / MODEL_FILE
        proto = _finalize(candidate, final, parent)
        outputs = run_onnx_subprocess(final, samples)
        validation = compare_to_parent(reference, outputs, quantized=quantization is not None,
                                       what=f"{MODEL_FILE} exported from {parent.path}", sample_source=sample_source,
                                       training_data=checks.training_data)
        metrics = {"validation": validation} | labelled_accuracy(checks, reference, outputs, parent.manifest.labels)

        output = proto.graph.output[0]
        manifest = Manifest(
            format="onnx", artifact=MODEL_FILE, stage="export", labels=list(parent.manifest.labels),
            preprocessing=preprocessing.to_dict(),
            input={"name": input_name, "shape": [1, 3, *preprocessing.size] if nchw else [1, *preprocessing.size, 3],
                   "dtype": "float32", "layout": "NCHW" if nchw else "NHWC"},
            output={"name": output.name, "shape": [1, len(parent.manifest.labels)], "dtype": "float32",
                    "activation": parent.manifest.output.get("activation", "softmax")},
            parent=parent_record(parent, out_dir), backbone=parent.manifest.backbone,
            options={"target": "onnx", "opset": opset, "int8": int8, "dynamic": dynamic, "simplify": simplify,
                     "calibration": str(calibration_dir) if calibration_dir else None,
                     "calibration_samples": quantization.get("calibration_images") if quantization else None,
                     "calibrate_method": quantization.get("calibrate_method") if quantization else None},
            seed=seed, metrics=metrics,
            extra={"opset": _opset_of(proto), "quantization": quantization, "parent_format": parent.manifest.format},
            versions=library_versions("onnx", "onnxruntime", "tf2onnx", "onnxslim", "tensorflow", "numpy"))
        artifact = write_artifact(out_dir, MODEL_FILE, manifest, writer=lambda tmp: shutil.copyfile(final, tmp))
    return artifact


def _calibration_dir(parent: Artifact, calibration: Path | None) -> Path:
    """The image folder to calibrate on: the given one, else the parent's training folder."""
    candidate = Path(calibration).expanduser() if calibration else None
    if candidate is None:
        recorded = parent.manifest.extra.get("data")
        candidate = Path(recorded) if recorded else None
    if candidate is None or not candidate.is_dir():
        raise UsageError(f"--int8 needs calibration images and {candidate or 'no training folder'} is not available",
                         fix="pass --calibration DIR (an image folder, one sub-folder per class)")
    from edgekit.data import find_split

    return find_split(candidate, "train") or candidate


def _convert_keras(parent: Artifact, preprocessing: Preprocessing, samples: np.ndarray, *, opset: int,
                   trust: bool):
    """tf2onnx conversion with a static batch-1 input; returns (proto, float outputs on samples, input name).

    Keras models go through ``from_keras``; a SavedModel's signature through ``from_function``.
    """
    from edgekit._tf import import_tf, silence_native_stderr
    from edgekit.keras_io import SavedModelFunction, load_float_model

    tf, _ = import_tf()
    keras_model = load_float_model(parent.path, trust=trust)
    reference = keras_model.predict(samples, batch_size=16, verbose=0)
    input_name = "input"
    spec = (tf.TensorSpec((1, *preprocessing.size, 3), tf.float32, name=input_name),)
    try:
        with silence_native_stderr():
            import tf2onnx

            if isinstance(keras_model, SavedModelFunction):
                function = tf.function(lambda x: keras_model(x), input_signature=spec)
                proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=opset)
            else:
                proto, _ = tf2onnx.convert.from_keras(keras_model, input_signature=spec, opset=opset)
    except Exception as exc:  # tf2onnx raises bare ValueError/KeyError/... for unsupported graphs
        raise ConversionError(f"tf2onnx could not convert {parent.path}: {type(exc).__name__}: {exc}",
                              fix="try another --opset, or report the layer named in the message") from exc
    return proto, reference, input_name


def _simplify(proto):
    import onnxslim

    try:
        return onnxslim.slim(proto)
    except Exception as exc:  # onnxslim surfaces errors of its many passes as plain exceptions
        raise ConversionError(f"onnxslim could not simplify the graph: {exc}", fix="export without --simplify") from exc


def _save(proto, path: Path) -> None:
    import onnx

    onnx.save(proto, str(path))


def _calibration_reader(batches: np.ndarray, input_name: str, *, nchw: bool = False):
    from onnxruntime.quantization import CalibrationDataReader

    class FolderReader(CalibrationDataReader):
        """Feeds one normalized image at a time (the model's batch is 1), channels-first for NCHW models."""

        def __init__(self):
            self._items = iter(np.ascontiguousarray(batches.transpose(0, 3, 1, 2)) if nchw else batches)

        def get_next(self):
            item = next(self._items, None)
            return None if item is None else {input_name: item[None]}

    return FolderReader()


def _pre_process(source: Path, work: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / "prepared.onnx"
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
    except Exception as exc:  # shape inference / optimizer failures
        raise ConversionError(f"onnxruntime quant_pre_process failed: {exc}", fix="export without --int8") from exc
    return prepared


def _softmax_nodes(path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Softmax"]


def _quantize_static(source: Path, work: Path, *, input_name: str, folder: Path, preprocessing: Preprocessing,
                     count: int, method: str, seed: int, nchw: bool = False) -> tuple[Path, dict]:
    """QDQ static quantization: per-channel 7-bit QInt8 weights (see module docstring), QUInt8
    activations, Softmax kept float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    images = sample_images(folder, preprocessing, count, seed)
    prepared = _pre_process(source, work)
    excluded = _softmax_nodes(prepared)
    target = work / "int8.onnx"
    status(f"calibrating int8 ranges ({method}) on {len(images)} images from {folder}")
    try:
        with _quiet_quantizer():
            quantize_static(str(prepared), str(target), _calibration_reader(images, input_name, nchw=nchw),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, reduce_range=True, nodes_to_exclude=excluded,
                            calibrate_method=getattr(CalibrationMethod, _METHODS[method]))
    except Exception as exc:  # calibration/quantizer errors come as generic exceptions
        raise ConversionError(f"onnxruntime static quantization failed: {exc}",
                              fix="try --calibrate-method minmax or more --calibration-samples") from exc
    return target, {"mode": "static-qdq", "calibrate_method": method, "calibration_images": len(images),
                    "calibration_folder": str(folder), "activations": "uint8", "weights": "int8 per-channel, 7-bit",
                    "float_nodes": excluded}


@contextlib.contextmanager
def _quiet_quantizer():
    """The quantizer logs per-tensor warnings on the root logger and prints calibration progress on
    stdout (which would corrupt ``--json`` output): drop the warnings, send the prints to stderr."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        root.setLevel(level)


def _quantize_dynamic(source: Path, work: Path) -> tuple[Path, dict]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    prepared = _pre_process(source, work)
    target = work / "dynamic.onnx"
    try:
        with _quiet_quantizer():
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QUInt8)
    except Exception as exc:  # quantizer errors come as generic exceptions
        raise ConversionError(f"onnxruntime dynamic quantization failed: {exc}", fix="use --int8 instead") from exc
    return target, {"mode": "dynamic", "weights": "uint8"}


def _finalize(candidate: Path, final: Path, parent: Artifact):
    """Embed labels + preprocessing, run the full checker, save; returns the final proto."""
    import onnx

    from edgekit.runtime.metadata import embed_onnx_metadata, make_metadata

    proto = onnx.load(str(candidate))
    embed_onnx_metadata(proto, make_metadata(parent.manifest.labels, parent.manifest.preprocessing))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the exported ONNX graph fails onnx.checker: {str(exc).splitlines()[0]}",
                              fix="try another --opset or export without --simplify") from exc
    _save(proto, final)
    return proto


def _opset_of(proto) -> int:
    return next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), 0)


def run_onnx_subprocess(model: Path, inputs: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Outputs of an ONNX model on ``inputs`` (one at a time), computed by onnxruntime in a child process.

    A crash inside onnxruntime (bad graph, unsupported op) becomes a :class:`ConversionError` here
    instead of taking down the caller.
    """
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-run-") as work_name:
        work = Path(work_name)
        np.save(work / "in.npy", np.ascontiguousarray(inputs, dtype=np.float32), allow_pickle=False)
        command = [sys.executable, "-m", "edgekit.targets.onnx", "run", str(model), str(work / "in.npy"),
                   str(work / "out.npy"), str(threads)]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S,
                                  env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
        except subprocess.TimeoutExpired as exc:
            raise ConversionError(f"running {model} did not finish within {WORKER_TIMEOUT_S} s",
                                  fix="check the model; it may be far larger than expected") from exc
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            why = f"crashed (signal {-proc.returncode})" if proc.returncode < 0 else (lines[-1] if lines else "failed")
            raise ConversionError(f"onnxruntime could not run {model}: {why}",
                                  fix="re-export the model; see --debug for the worker's output")
        return np.load(work / "out.npy", allow_pickle=False)


def _worker(model: str, inputs: str, outputs: str, threads: str) -> None:
    """Child-process side of :func:`run_onnx_subprocess`: onnxruntime on each input, results to .npy."""
    from edgekit.runtime.safety import check_model_file

    check_model_file(model, "onnx")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    from edgekit.runtime.backends import is_nchw

    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    data = np.load(inputs, allow_pickle=False)  # NHWC images; channels-first models get them transposed
    if is_nchw(tuple(d if isinstance(d, int) else -1 for d in session.get_inputs()[0].shape)):
        data = np.ascontiguousarray(data.transpose(0, 3, 1, 2))
    result = np.stack([session.run(None, {name: item[None]})[0][0] for item in data])
    np.save(outputs, result, allow_pickle=False)


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "run":
        sys.exit("usage: python -m edgekit.targets.onnx run MODEL IN.npy OUT.npy THREADS")
    try:
        _worker(*sys.argv[2:])
    except ModelFileError as exc:
        sys.exit(exc.one_line())
