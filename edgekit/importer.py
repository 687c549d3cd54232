"""Bring your own model: a foreign .keras/.h5, SavedModel folder, .tflite or .onnx becomes an edgekit artifact.

``edgekit import MODEL --out DIR`` (and every stage given a model without a ``manifest.json``, via
:func:`ensure_artifact`) copies the model under the output folder, never beside the source, and
writes the manifest the other stages need:

- the source's path and sha256 (a SavedModel folder is hashed file by file);
- the input spec read from the model itself: shape, dtype, quantization, NCHW/NHWC layout;
- labels from a file (one per line or a JSON list), else ``class_0..N-1``;
- preprocessing: a named preset (``torch``, ``tf`` for [-1, 1], ``0-1``, ``raw`` 0-255), explicit
  mean/std, or, for a uint8/int8 input, raw pixels through the input's quantization parameters;
- the training and held-out image folders when given (``training.folder`` /
  ``training.eval_folder``), which later stages use as their calibration and evaluation defaults,
  and the training images' content digest (``training.images_sha256``).

Keras files are vetted by :mod:`edgekit.keras_io` (custom layers refused unless ``trust``); .tflite
and .onnx files by :mod:`edgekit.runtime.safety`. Importing a .tflite/.onnx needs only the
on-device runtime; .keras/.h5/SavedModel need TensorFlow (the full install).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgekit.artifacts import (Artifact, Manifest, Preprocessing, TrainingData, find_manifest, library_versions,
                               load_artifact, sha256_path, write_artifact)
from edgekit.errors import ModelFileError, UsageError

IMPORTED_DIR = "imported"  # where a stage puts the artifact of a foreign input, inside its --out
KINDS = {".keras": "keras", ".h5": "keras", ".hdf5": "keras", ".tflite": "tflite", ".onnx": "onnx"}


@dataclass(frozen=True)
class ImportOptions:
    """What the model file cannot say about itself; every field is optional."""

    labels: Path | list[str] | None = None  # a labels file, or the labels themselves
    preprocess: str | None = None  # a PREPROCESS_PRESETS name
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: int | None = None  # only for models whose input height/width are dynamic
    trust: bool = False  # allow Keras custom/Lambda layers
    train_data: Path | None = None
    eval_data: Path | None = None


@dataclass(frozen=True)
class ModelSpec:
    """What an import reads from the model: NHWC input shape, dtype, quantization, layout, class count."""

    kind: str  # keras | savedmodel | tflite | onnx
    input_shape: tuple[int, ...]  # NHWC, -1 for dynamic dimensions
    input_dtype: str
    classes: int
    input_name: str = ""
    layout: str = "NHWC"
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized_input(self) -> bool:
        return self.scale > 0 and self.input_dtype in ("uint8", "int8")


def read_labels(path: Path) -> list[str]:
    """A labels file: a JSON list, or one label per line."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --labels {path}: {exc}", fix="pass a UTF-8 text file, one label per line") from exc
    if text.lstrip().startswith("["):
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--labels {path} is not a valid JSON list: {exc}", fix="one label per line also works") from exc
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels or not all(isinstance(label, str) for label in labels):
        raise UsageError(f"--labels {path} holds no labels", fix="one label per line, in the model's output order")
    return labels


def default_labels(classes: int) -> list[str]:
    return [f"class_{i}" for i in range(classes)]


def parse_channels(text: str, option: str) -> tuple[float, float, float]:
    """``--mean 127.5`` or ``--mean 123.7,116.3,103.5``: one value for all channels, or one per channel."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise UsageError(f"{option} {text!r} is not a number list", fix=f"e.g. {option} 127.5,127.5,127.5") from exc
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise UsageError(f"{option} needs 1 or 3 values, got {len(values)}", fix=f"e.g. {option} 127.5,127.5,127.5")
    return values[0], values[1], values[2]


def normalisation(preprocess: str | None, mean: tuple[float, ...] | None,
                  std: tuple[float, ...] | None) -> dict[str, list[float]] | None:
    """``{"mean", "std"}`` from a preset or explicit values (size comes from the model), or None if neither."""
    if preprocess and (mean is not None or std is not None):
        raise UsageError("--preprocess and --mean/--std both set the normalisation", fix="pass one of them")
    if preprocess:
        chosen = Preprocessing.preset(preprocess, (1, 1))
        return {"mean": list(chosen.mean), "std": list(chosen.std)}
    if mean is None and std is None:
        return None
    if any(v == 0 for v in std or ()):
        raise UsageError("--std has a zero value", fix="pass non-zero standard deviations")
    return {"mean": list(mean or (0.0, 0.0, 0.0)), "std": list(std or (1.0, 1.0, 1.0))}


def model_kind(path: Path) -> str:
    """keras | savedmodel | tflite | onnx, from the path; anything else is a one-line refusal."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ModelFileError(f"{path} is a folder without manifest.json or saved_model.pb",
                             fix="pass a model file (.keras/.h5/.tflite/.onnx), a SavedModel folder or an edgekit artifact")
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise ModelFileError(f"{path}: edgekit imports .keras, .h5, .tflite, .onnx files and SavedModel folders, "
                             f"not {path.suffix or 'files without a suffix'}",
                             fix="convert the model to one of those formats (PyTorch: torch.onnx.export)")
    return kind


def inspect_model(path: Path, kind: str, *, trust: bool = False) -> ModelSpec:
    """The input/output facts held by the model file itself (safety-checked before any native parser)."""
    if kind == "tflite":
        from edgekit.runtime.backends import tflite_io_specs
        from edgekit.runtime.safety import check_model_file

        check_model_file(path, "tflite")
        inp, out = tflite_io_specs(path.read_bytes())
        return ModelSpec(kind, inp.shape, inp.dtype.name, int(out.shape[-1]), scale=inp.scale,
                         zero_point=inp.zero_point)
    if kind == "onnx":
        return _onnx_spec(path)
    from edgekit.keras_io import load_float_model

    model = load_float_model(path, trust=trust)
    shape = tuple(-1 if d is None else int(d) for d in model.input_shape)
    classes = model.output_shape[-1]
    return ModelSpec(kind, shape, "float32", -1 if classes is None else int(classes),
                     input_name=getattr(model, "input_name", ""))


def _onnx_spec(path: Path) -> ModelSpec:
    import onnxruntime as ort

    from edgekit.runtime.backends import ORT_DTYPES, is_nchw
    from edgekit.runtime.safety import check_model_file

    check_model_file(path, "onnx")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's error classes are not one hierarchy
        raise ModelFileError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}",
                             fix="re-export the model (opset and external data must be complete)") from exc
    node_in, node_out = session.get_inputs()[0], session.get_outputs()[0]
    shape = tuple(d if isinstance(d, int) else -1 for d in node_in.shape)
    nchw = is_nchw(shape)
    nhwc = (shape[0], shape[2], shape[3], shape[1]) if nchw else shape
    classes = node_out.shape[-1] if node_out.shape else -1
    dtype = ORT_DTYPES.get(node_in.type)
    return ModelSpec("onnx", nhwc, "float32" if dtype is None else dtype.__name__,
                     classes if isinstance(classes, int) else -1, input_name=node_in.name,
                     layout="NCHW" if nchw else "NHWC")


def _image_size(spec: ModelSpec, path: Path, size: int | None) -> tuple[int, int]:
    if len(spec.input_shape) != 4 or spec.input_shape[3] not in (1, 3, -1):
        raise ModelFileError(f"{path} takes input of shape {list(spec.input_shape)}, not an image batch "
                             "(N, H, W, 3) or (N, 3, H, W)", fix="import an image classifier")
    height, width = spec.input_shape[1:3]
    if height > 0 and width > 0:
        if size is not None and (size, size) != (height, width):
            raise UsageError(f"--size {size} differs from the {height}x{width} input of {path}",
                             fix="drop --size; the model's own input size is used")
        return height, width
    if size is None:
        raise UsageError(f"{path} has a dynamic input size ({list(spec.input_shape)})",
                         fix="pass --size N (the height and width to run it at)")
    return size, size


def resolve_preprocessing(spec: ModelSpec, path: Path, options: ImportOptions) -> tuple[Preprocessing, str]:
    """The preprocessing and where it came from (preset, mean/std, or the input's quantization)."""
    size = _image_size(spec, path, options.size)
    chosen = normalisation(options.preprocess, options.mean, options.std)
    if chosen is not None:
        source = f"preset {options.preprocess}" if options.preprocess else "--mean/--std"
        return Preprocessing(size=size, mean=tuple(chosen["mean"]), std=tuple(chosen["std"])), source
    if spec.quantized_input:
        return (Preprocessing.from_quantization(size, spec.input_dtype, spec.scale, spec.zero_point),
                f"raw pixels through the {spec.input_dtype} input quantization")
    raise UsageError(f"{path} has a float input and no recorded normalisation",
                     fix="pass --preprocess torch|tf|0-1|raw (or --mean/--std) as the model was trained")


def resolve_labels(spec: ModelSpec, path: Path, labels: Path | list[str] | None) -> list[str]:
    found = list(labels) if isinstance(labels, list) else read_labels(labels) if labels else None
    if found is None:
        if spec.classes <= 0:
            raise UsageError(f"{path} has a dynamic number of classes", fix="pass --labels FILE")
        return default_labels(spec.classes)
    if spec.classes > 0 and len(found) != spec.classes:
        raise UsageError(f"{path} outputs {spec.classes} classes but --labels gives {len(found)}",
                         fix="pass the labels file that belongs to this model, one label per output")
    return found


def _artifact_name(kind: str, source: Path) -> str:
    return {"savedmodel": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}.get(
        kind, "model" + source.suffix.lower())


def _copy(source: Path, kind: str):
    if kind == "savedmodel":
        return lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True)
    if kind == "onnx":
        from edgekit.runtime.safety import check_onnx_external_data

        if check_onnx_external_data(source):
            raise ModelFileError(f"{source} keeps its weights in external data files",
                                 fix="save it as one file: onnx.save(model, path, save_as_external_data=False)")
    return lambda tmp: shutil.copyfile(source, tmp)


def describe_model(source: Path, options: ImportOptions = ImportOptions()) -> Manifest:
    """The manifest an import writes for ``source``, built in memory (nothing is copied or written)."""
    kind = model_kind(source)
    spec = inspect_model(source, kind, trust=options.trust)
    preprocessing, pre_source = resolve_preprocessing(spec, source, options)
    labels = resolve_labels(spec, source, options.labels)
    training = TrainingData(
        folder=str(Path(options.train_data).expanduser().resolve()) if options.train_data else None,
        eval_folder=str(Path(options.eval_data).expanduser().resolve()) if options.eval_data else None)
    return Manifest(
        format="keras" if kind == "keras" else kind, artifact=_artifact_name(kind, source), stage="import",
        labels=labels, preprocessing=preprocessing.to_dict(),
        input={"name": spec.input_name, "shape": list(spec.input_shape), "dtype": spec.input_dtype,
               "layout": spec.layout, "scale": spec.scale, "zero_point": spec.zero_point},
        output={"shape": [1, spec.classes], "activation": "unknown"},
        options={"labels": str(options.labels) if isinstance(options.labels, Path) else
                 "given" if options.labels else "class_0..N-1",
                 "preprocess": options.preprocess, "trust_model": options.trust},
        training=training, tfmot_wrap="whole" if kind in ("keras", "savedmodel") else None,
        extra={"source": {"path": str(source.resolve()), "sha256": sha256_path(source), "kind": kind},
               "preprocessing_source": pre_source},
        versions=library_versions("numpy", "tensorflow", "onnxruntime", "ai-edge-litert"))


def import_model(*, model: Path, out_dir: Path, options: ImportOptions = ImportOptions()) -> Artifact:
    """Write ``out_dir/<model>`` + manifest.json for a foreign model; see the module docstring."""
    from edgekit.artifacts import check_output_dir

    source = Path(model).expanduser()
    if not source.exists():
        raise ModelFileError(f"{source} does not exist", fix="check the path to the model")
    kind = model_kind(source)
    out = check_output_dir(Path(out_dir), inputs=(source,))
    if source.resolve() == out or source.resolve() in out.parents:
        raise UsageError(f"--out {out} is inside the model {source}", fix="pass an --out folder outside the model")
    for option, folder in (("--train-data", options.train_data), ("--eval-data", options.eval_data)):
        if folder is not None and not Path(folder).expanduser().is_dir():
            raise UsageError(f"{option} {folder} is not a folder", fix="pass an image folder, one sub-folder per class")
    manifest = describe_model(source, options)
    if options.train_data is not None:
        from edgekit.data import images_sha256, scan_image_folder, training_images

        images = scan_image_folder(training_images(Path(options.train_data).expanduser()))
        manifest.training.images_sha256 = images_sha256({"train": images})
    return write_artifact(out, manifest.artifact, manifest, writer=_copy(source, kind), directory=kind == "savedmodel")


def is_foreign(path: Path) -> bool:
    """True for a model that has no edgekit manifest (a SavedModel folder counts as a model)."""
    path = Path(path).expanduser()
    return path.exists() and find_manifest(path) is None and (path.is_file() or (path / "saved_model.pb").is_file())


def ensure_artifact(model: Path, *, out_dir: Path, options: ImportOptions | None = None) -> Artifact:
    """The artifact for ``model``: loaded from its manifest, or (a foreign model) imported into ``out_dir/imported``.

    The one place every stage turns a user's own model into something with labels and preprocessing.
    """
    path = Path(model).expanduser()
    if is_foreign(path):
        return import_model(model=path, out_dir=Path(out_dir) / IMPORTED_DIR, options=options or ImportOptions())
    return load_artifact(path, require_manifest=False)
