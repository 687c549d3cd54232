"""Loading and saving Keras models without executing untrusted code.

``.keras`` files are loaded with Keras' ``safe_mode`` (refuses Lambda layers and arbitrary
functions in the config) and without custom objects; a file that needs either is refused with an
:class:`UnsafeModelError` unless the caller passes ``trust=True`` (``--trust-model``). Legacy
``.h5`` files can embed marshalled Python bytecode in Lambda layers, so their config is inspected
*before* deserialisation and anything but known layers is refused.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from edgekit.errors import ModelFileError, UnsafeModelError

MAX_CONFIG_BYTES = 64 << 20
MAX_UNCOMPRESSED_BYTES = 4 << 30
UNSAFE_CLASS_NAMES = {"Lambda", "TFOpLambda", "SlicingOpLambda"}


def _walk_config(node, found: set[str]) -> None:
    if isinstance(node, dict):
        class_name = node.get("class_name")
        if isinstance(class_name, str):
            module = node.get("module")
            if class_name in UNSAFE_CLASS_NAMES or class_name == "function" or (
                    isinstance(module, str) and not module.startswith(("keras", "tf_keras", "builtins", "tensorflow"))):
                found.add(f"{module + '.' if isinstance(module, str) else ''}{class_name}")
            if node.get("registered_name") and "custom" in str(node.get("registered_name")).lower():
                found.add(str(node["registered_name"]))
        for value in node.values():
            _walk_config(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk_config(value, found)


def inspect_keras_archive(path: Path) -> dict:
    """Read and vet a ``.keras`` zip without loading it: member names, sizes, and its config."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, NotImplementedError) as exc:  # NotImplementedError: zip version
        raise ModelFileError(f"{path} is not a valid .keras file (not a zip archive: {exc})",
                             fix="re-save the model with edgekit finetune or model.save('x.keras')") from exc
    with archive:
        total = 0
        for info in archive.infolist():
            member = Path(info.filename)
            if member.is_absolute() or ".." in member.parts:
                raise UnsafeModelError(f"{path} contains a member that escapes the archive: {info.filename!r}",
                                       fix="do not load this file; re-export the model from its source")
            total += info.file_size
            if info.compress_size and info.file_size / info.compress_size > 1000 and info.file_size > 50 << 20:
                raise UnsafeModelError(f"{path} looks like a decompression bomb ({info.filename!r} expands "
                                       f"{info.file_size // max(info.compress_size, 1)}x)", fix="do not load this file")
        if total > MAX_UNCOMPRESSED_BYTES:
            raise UnsafeModelError(f"{path} would expand to {total >> 20} MiB", fix="do not load this file")
        if "config.json" not in archive.namelist():
            raise ModelFileError(f"{path} has no config.json: not a Keras v3 archive",
                                 fix="re-save the model with model.save('x.keras')")
        info = archive.getinfo("config.json")
        if info.file_size > MAX_CONFIG_BYTES:
            raise UnsafeModelError(f"{path} has an oversized config.json", fix="do not load this file")
        try:
            return json.loads(archive.read("config.json"))
        except (json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile, OSError, NotImplementedError,
                RuntimeError) as exc:  # zipfile raises the last two for unsupported or encrypted members
            raise ModelFileError(f"{path} has a corrupt config.json: {exc}", fix="re-save the model") from exc


def _refuse_unsafe(path: Path, config, *, trust: bool) -> None:
    found: set[str] = set()
    _walk_config(config, found)
    if found and not trust:
        raise UnsafeModelError(f"{path} contains layers that run arbitrary Python code: {', '.join(sorted(found))}",
                               fix="only if you trust its author, pass --trust-model")


def load_keras_model(path: Path, *, trust: bool = False, compile: bool = False):
    """Load a ``.keras`` or ``.h5`` tf-keras model, refusing code-executing content unless ``trust``."""
    from edgekit._tf import import_tf

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path} does not exist", fix="check the model path")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes)", fix="re-save the model; the file was not written")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        config = inspect_keras_archive(path)
        _refuse_unsafe(path, config, trust=trust)
    elif suffix in (".h5", ".hdf5"):
        config = _h5_config(path)
        _refuse_unsafe(path, config, trust=trust)
    else:
        raise ModelFileError(f"{path}: unsupported Keras model suffix {suffix!r}", fix="use a .keras (or .h5) file")
    tf, tf_keras = import_tf()
    try:
        if suffix == ".keras":
            return tf_keras.models.load_model(path, compile=compile, safe_mode=not trust)
        return tf_keras.models.load_model(path, compile=compile)
    except (ValueError, TypeError, OSError, KeyError) as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise UnsafeModelError(f"{path} was refused by Keras safe mode: {exc}",
                                   fix="only if you trust its author, pass --trust-model") from exc
        raise ModelFileError(f"{path} could not be loaded as a Keras model: {str(exc).splitlines()[0]}",
                             fix="re-save the model with edgekit finetune") from exc


def _h5_config(path: Path):
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py ships with TensorFlow
        raise ModelFileError("reading .h5 models needs h5py", fix="pip install h5py") from exc
    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
    except OSError as exc:
        raise ModelFileError(f"{path} is not a valid HDF5 model file: {exc}", fix="re-save the model") from exc
    if raw is None:
        raise ModelFileError(f"{path} holds weights only (no model_config)",
                             fix="pass a full model, or load the weights into a backbone with --weights")
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} has a corrupt model_config: {exc}", fix="re-save the model") from exc


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold: a fixed stamp, not the save time


def save_keras_model(model, path: Path) -> None:
    """Save ``model`` to ``path`` in the Keras v3 format (callers wrap this in ``atomic_path``).

    Keras stamps the save time into the archive (metadata.json's ``date_saved`` and each member's zip time),
    so the same weights saved twice gave two sha256s, and manifests naming a parent by its hash told one
    model apart from itself. The archive is rewritten without them: same model, same bytes.
    """
    # tf-keras infers the format from the suffix; the temp path from atomic_path keeps ".keras".
    model.save(str(path), save_format="keras")
    _strip_save_time(Path(path))


def _strip_save_time(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata, sort_keys=True).encode()
            stamped = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            stamped.compress_type = info.compress_type
            stamped.external_attr = info.external_attr
            archive.writestr(stamped, data)


class SavedModelFunction:
    """A SavedModel folder's ``serving_default`` signature behind the part of the Keras interface that
    post-training quantization, ONNX export and evaluation use (``__call__``, ``predict``,
    ``input_shape``, ``weights``). Loading a SavedModel runs its traced graph, never Python code.
    Pruning, clustering and QAT need real Keras layers, so they take .keras/.h5 models only.
    """

    def __init__(self, directory: Path):
        from edgekit._tf import import_tf, silence_native_stderr

        tf, _ = import_tf()
        try:
            with silence_native_stderr():
                self.trackable = tf.saved_model.load(str(directory))
        except Exception as exc:  # TF raises OSError/ValueError/NotFoundError for broken folders
            raise ModelFileError(f"{directory} could not be loaded as a SavedModel: {str(exc).splitlines()[0]}",
                                 fix="pass the folder holding saved_model.pb and variables/") from exc
        signature = getattr(self.trackable, "signatures", {}).get("serving_default")
        if signature is None:
            raise ModelFileError(f"{directory} has no serving_default signature",
                                 fix="re-save it with tf.saved_model.save(model, dir, signatures=...)")
        inputs = signature.structured_input_signature[1]
        outputs = signature.structured_outputs
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFileError(f"{directory}: serving_default takes {len(inputs)} inputs and returns {len(outputs)} "
                                 "outputs; an image classifier has one of each",
                                 fix="export a signature with one image input and one class-score output")
        (self.input_name, spec), = inputs.items()
        (self.output_name, out_spec), = outputs.items()
        self._signature = signature
        self.input_shape = tuple(spec.shape.as_list())
        self.output_shape = tuple(out_spec.shape.as_list())
        self.weights = list(self.trackable.variables) if hasattr(self.trackable, "variables") else []

    def __call__(self, inputs, training: bool = False):
        """The signature's output; a batch larger than a fixed batch-1 signature runs image by image."""
        if self.input_shape[0] == 1 and getattr(inputs, "shape", (1,))[0] not in (1, None):
            import numpy as np

            return np.concatenate([np.asarray(self(inputs[i:i + 1])) for i in range(len(inputs))])
        return self._signature(**{self.input_name: inputs})[self.output_name]

    def predict(self, inputs, batch_size: int = 32, verbose: int = 0):
        import numpy as np

        return np.concatenate([np.asarray(self(np.asarray(inputs[i:i + batch_size], np.float32)))
                               for i in range(0, len(inputs), batch_size)])


def load_float_model(path: Path, *, trust: bool = False):
    """A float parent ready to run and convert: a tf-keras model (.keras/.h5) or a SavedModel folder's signature."""
    path = Path(path)
    if path.is_dir():
        return SavedModelFunction(path)
    return load_keras_model(path, trust=trust)
