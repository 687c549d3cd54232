"""Artifacts and their manifests: the record every stage reads and writes.

An artifact is one model file in its own directory with a ``manifest.json`` beside it::

    runs/demo/float/model.keras      runs/demo/float/manifest.json
    runs/demo/int8/model.tflite      runs/demo/int8/manifest.json   (parent -> float's sha256)

The manifest holds what the next stage needs without reloading heavy libraries: format, hash,
size, input/output spec (with quantization), preprocessing, labels, parent, options, seed,
library versions, the machine (CPU and its numeric ISA features) and metrics. All writes are atomic
(temp file in the same directory + rename), so an interruption never leaves a half-written model or manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.errors import ManifestError, ModelFileError, OutputError, UsageError
from edgekit.machine import machine_record

MANIFEST_NAME = "manifest.json"
# Named input normalisations of common model families: (mean, std) per RGB channel on 0..255 pixels.
PREPROCESS_PRESETS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "torch": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),  # torchvision: x/255, ImageNet mean/std
    "tf": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),  # [-1, 1]: Keras MobileNet/Inception style
    "0-1": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),  # x / 255
    "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # 0..255 unchanged (EfficientNet/MobileNetV3 in Keras)
}
MANIFEST_SCHEMA = "edgekit.manifest/2"
# Layout 1 kept the training folder, tfmot wrapping and quantization in ``extra``; it is read and upgraded.
MANIFEST_SCHEMA_V1 = "edgekit.manifest/1"
TEMP_PREFIX = ".edgekit-tmp-"


@dataclass(frozen=True)
class Preprocessing:
    """How raw RGB pixels (0..255) become model input: resize, then ``(x - mean) / std`` per channel."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize_method: str = "bilinear"
    color: str = "RGB"

    @classmethod
    def preset(cls, name: str, size: tuple[int, int]) -> Preprocessing:
        """One of :data:`PREPROCESS_PRESETS` at ``size``; an unknown name is a UsageError listing them."""
        if name not in PREPROCESS_PRESETS:
            raise UsageError(f"unknown --preprocess {name!r}", fix=f"use one of {', '.join(PREPROCESS_PRESETS)} "
                             "(or --mean/--std)")
        mean, std = PREPROCESS_PRESETS[name]
        return cls(size=size, mean=mean, std=std)

    @classmethod
    def from_quantization(cls, size: tuple[int, int], dtype: str, scale: float, zero_point: int) -> Preprocessing:
        """What feeds raw pixels straight through a quantized input: ``q = pixel`` (uint8) or ``pixel - 128`` (int8).

        Models such as Coral's ``*_quant.tflite`` take camera pixels unchanged; the real value the
        graph sees is ``(q - zero_point) * scale``, i.e. ``(pixel - mean) / std`` with these numbers.
        """
        offset = 128 if dtype == "int8" else 0
        return cls(size=size, mean=(float(zero_point + offset),) * 3, std=(1.0 / scale,) * 3)

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "mean": list(self.mean), "std": list(self.std),
                "resize_method": self.resize_method, "color": self.color}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        try:
            return cls(size=(int(data["size"][0]), int(data["size"][1])),
                       mean=tuple(float(v) for v in data.get("mean", (0, 0, 0))),
                       std=tuple(float(v) for v in data.get("std", (1, 1, 1))),
                       resize_method=str(data.get("resize_method", "bilinear")),
                       color=str(data.get("color", "RGB")))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ManifestError(f"preprocessing block is malformed: {exc}",
                                fix="re-export the model with edgekit") from exc


@dataclass
class TrainingData:
    """The image folders behind a model, which later stages calibrate, fine-tune and validate on."""

    folder: str | None = None  # what finetune trained on (or `edgekit import --train-data`): absolute path
    split: str | None = None  # how finetune got validation images: "folders" or "seeded split" (seed in options)
    eval_folder: str | None = None  # labelled held-out images given to `edgekit import --eval-data`
    # edgekit.data.images_sha256 of the images trained and validated on (import: of the training folder's
    # images): the content identity; the folder path alone does not say whether its bytes changed.
    images_sha256: str | None = None

    def folder_path(self) -> Path | None:
        """The recorded training folder if it is still a folder here."""
        return Path(self.folder) if self.folder and Path(self.folder).is_dir() else None


@dataclass
class Quantization:
    """How an exported (ONNX) model was quantized; a quantized model is never quantized again."""

    mode: str  # static-qdq | dynamic
    weights: str = ""
    activations: str | None = None
    calibrate_method: str | None = None
    calibration_images: int | None = None
    calibration_folder: str | None = None
    float_nodes: list[str] = field(default_factory=list)  # nodes left in float (e.g. the Softmax)


@dataclass
class Manifest:
    """The record written beside every artifact.

    What a later stage reads back is a typed field (``training``, ``tfmot_wrap``, ``quantization``);
    ``extra`` holds the stage's reports for people (history, pruning/clustering/guard reports, timings),
    which no stage reads back.
    """

    format: str  # keras | tflite | onnx | edgetpu-tflite
    artifact: str  # file name, relative to the manifest's directory
    stage: str
    sha256: str = ""
    size_bytes: int = 0
    labels: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    parent: dict[str, Any] | None = None  # {"path": relative-or-absolute, "sha256": ...}
    backbone: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training: TrainingData = field(default_factory=TrainingData)
    tfmot_wrap: str | None = None  # Keras models: "whole" or "selective" (the backbone catalog's tfmot wrapping)
    quantization: Quantization | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)  # edgekit.machine.machine_record() where it was written
    created: str = ""
    schema: str = MANIFEST_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: Path) -> Manifest:
        """A manifest from its JSON; one in the first layout is upgraded (nothing is rewritten on disk)."""
        if isinstance(data, dict) and data.get("schema") == MANIFEST_SCHEMA_V1:
            data = _upgrade_v1(data)
        if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
            raise ManifestError(f"{where} is not an edgekit manifest (schema {MANIFEST_SCHEMA!r} expected)",
                                fix="point at a directory written by an edgekit command")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            fields = {k: v for k, v in data.items() if k in known}
            fields["training"] = TrainingData(**(fields.get("training") or {}))
            if fields.get("quantization") is not None:
                fields["quantization"] = Quantization(**fields["quantization"])
            return cls(**fields)
        except TypeError as exc:
            raise ManifestError(f"{where} is missing fields: {exc}", fix="re-run the stage that wrote it") from exc

    def preprocessing_spec(self) -> Preprocessing:
        return Preprocessing.from_dict(self.preprocessing)


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Layout 1 -> 2: the keys later stages read move out of ``extra`` into their typed fields."""
    extra = dict(data.get("extra") or {})
    training = {"folder": extra.pop("data", None), "split": extra.pop("split", None),
                "eval_folder": extra.pop("eval_data", None)}
    return data | {"schema": MANIFEST_SCHEMA, "training": training, "tfmot_wrap": extra.pop("tfmot_wrap", None),
                   "quantization": extra.pop("quantization", None), "extra": extra}


@dataclass(frozen=True)
class Artifact:
    """A model file plus its manifest, as found on disk."""

    path: Path
    manifest: Manifest

    @property
    def directory(self) -> Path:
        return self.path.parent


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a model file, or of a model folder (a SavedModel): every file's relative path and hash, sorted."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    return sha256_named((item.relative_to(path).as_posix(), item)
                        for item in sorted(p for p in path.rglob("*") if p.is_file()))


def sha256_named(files: Iterable[tuple[str, Path]]) -> str:
    """sha256 over (name, file's sha256) pairs in the order given: identical for the same names and bytes
    wherever the files lie, whatever their mtimes."""
    digest = hashlib.sha256()
    for name, item in files:
        digest.update(f"{name}\0{sha256_file(item)}\n".encode())
    return digest.hexdigest()


def path_size(path: Path) -> int:
    """Bytes of a model file, or of every file in a model folder."""
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def library_versions(*names: str) -> dict[str, str]:
    """Versions of installed distributions (without importing them) plus python/platform."""
    from importlib import metadata

    versions = {"edgekit": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _raise_output_error(path: Path, exc: OSError) -> None:
    if exc.errno == errno.ENOSPC:
        raise OutputError(f"no space left on the device while writing {path}",
                          fix="free disk space or choose another --out folder") from exc
    if exc.errno in (errno.EFBIG, errno.EDQUOT):
        raise OutputError(f"cannot write {path}: {exc.strerror} (file size limit or disk quota reached)",
                          fix="raise the limit (ulimit -f, quota), free space or choose another --out folder") from exc
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise OutputError(f"cannot write {path}: {exc.strerror}",
                          fix="choose a writable --out folder") from exc
    raise OutputError(f"cannot write {path}: {exc}",
                      fix="check that the --out folder is writable and its disk has free space") from exc


@contextlib.contextmanager
def atomic_path(final: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success rename it into place, else delete it.

    The temp path lives in the same directory so the rename is atomic; on any exception
    (including KeyboardInterrupt) the temp file is removed and ``final`` is untouched.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=final.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=final.suffix, dir=final.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        _raise_output_error(final, exc)
    try:
        yield tmp
        if not directory:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())
        if directory and final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except OSError as exc:
        _remove(tmp)
        _raise_output_error(final, exc)
    except BaseException:
        _remove(tmp)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def check_output_dir(out_dir: Path, *, inputs: tuple[Path, ...] = ()) -> Path:
    """Refuse an output folder that is (or contains) an input file, before any work starts."""
    out_dir = Path(out_dir).expanduser().resolve()
    for item in inputs:
        item = Path(item).expanduser().resolve()
        if item == out_dir or (item.is_file() and item.parent == out_dir and item.name in (MANIFEST_NAME,)):
            raise OutputError(f"output folder {out_dir} is the input {item}",
                              fix="pass a different --out folder so the input is not overwritten")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output path {out_dir} exists and is not a folder", fix="pass a folder to --out")
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"output folder {out_dir} cannot be created: {existing} is a file",
                          fix="pass a --out folder whose parents are folders")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {existing} is not writable", fix="choose a writable --out folder")
    return out_dir


def write_artifact(out_dir: Path, file_name: str, manifest: Manifest, *, writer, directory: bool = False) -> Artifact:
    """Write a model via ``writer(tmp_path)`` and its manifest, both atomically, into ``out_dir``.

    The model is renamed into place first, then the manifest (which records the model's hash), so
    a manifest on disk always describes a complete model file. ``directory`` models (a SavedModel)
    are written into a temporary folder and renamed as a whole.
    """
    out_dir = Path(out_dir)
    final = out_dir / file_name
    with atomic_path(final, directory=directory) as tmp:
        writer(tmp)
        manifest.sha256 = sha256_path(tmp)
        manifest.size_bytes = path_size(tmp)
    manifest.artifact = file_name
    manifest.created = manifest.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not manifest.versions:
        manifest.versions = library_versions()
    if not manifest.machine:
        manifest.machine = machine_record()
    write_json_atomic(out_dir / MANIFEST_NAME, manifest.to_dict())
    return Artifact(path=final, manifest=manifest)


def update_manifest(artifact: Artifact) -> None:
    """Rewrite an artifact's manifest (e.g. after new metrics were measured)."""
    write_json_atomic(artifact.directory / MANIFEST_NAME, artifact.manifest.to_dict())


def find_manifest(model_path: Path) -> Path | None:
    """The manifest of an artifact folder, or of the model file (or SavedModel folder) it names."""
    model_path = Path(model_path)
    candidate = model_path / MANIFEST_NAME if model_path.is_dir() else model_path.parent / MANIFEST_NAME
    if not candidate.is_file() and (model_path / "saved_model.pb").is_file():
        candidate = model_path.parent / MANIFEST_NAME
        try:
            named = json.loads(candidate.read_text(encoding="utf-8")).get("artifact") if candidate.is_file() else None
        except (OSError, ValueError, AttributeError):
            named = None
        return candidate if named == model_path.name else None
    return candidate if candidate.is_file() else None


def load_artifact(path: Path, *, require_manifest: bool = True, verify_hash: bool = True) -> Artifact:
    """Find the model file and manifest for a path given by the user (the directory or the file)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"{path} does not exist", fix="check the path to the model or its folder")
    manifest_path = find_manifest(path)
    if manifest_path is None:
        if require_manifest:
            raise ManifestError(f"no {MANIFEST_NAME} next to {path}",
                                fix="pass a model written by edgekit, or its folder")
        if path.is_dir():
            raise ModelFileError(f"{path} is a folder without a {MANIFEST_NAME}", fix="pass the model file itself")
        return Artifact(path=path, manifest=Manifest(format=guess_format(path), artifact=path.name, stage="external"))
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{manifest_path} is not valid JSON: {exc}", fix="re-run the stage that wrote it") from exc
    manifest = Manifest.from_dict(data, where=manifest_path)
    if Path(manifest.artifact).name != manifest.artifact:
        raise ManifestError(f"{manifest_path} names an artifact outside its folder: {manifest.artifact!r}",
                            fix="re-run the stage that wrote it")
    model = manifest_path.parent / manifest.artifact
    if path.is_file() and path.resolve() != model.resolve():
        # A file beside someone else's manifest: treat it as external.
        return Artifact(path=path, manifest=Manifest(format=guess_format(path), artifact=path.name, stage="external"))
    if not (model.is_dir() if manifest.format == "savedmodel" else model.is_file()):
        raise ModelFileError(f"{model} named by {manifest_path} is missing", fix="re-run the stage that wrote it")
    if verify_hash and manifest.sha256 and sha256_path(model) != manifest.sha256:
        raise ManifestError(f"{model} does not match the sha256 in {manifest_path} (modified or truncated)",
                            fix="re-run the stage that wrote it")
    return Artifact(path=model, manifest=manifest)


def guess_format(path: Path) -> str:
    if Path(path).is_dir() and (Path(path) / "saved_model.pb").is_file():
        return "savedmodel"
    suffix = Path(path).suffix.lower()
    return {".tflite": "tflite", ".onnx": "onnx", ".keras": "keras", ".h5": "h5"}.get(suffix, suffix.lstrip(".") or "unknown")


def resolve_parent(artifact: Artifact) -> Artifact | None:
    """The parent artifact named in the manifest (relative paths are relative to this artifact's folder)."""
    parent = artifact.manifest.parent
    if not parent or not parent.get("path"):
        return None
    candidate = Path(parent["path"])
    if not candidate.is_absolute():
        candidate = (artifact.directory / candidate).resolve()
    if not candidate.exists():
        return None
    found = load_artifact(candidate)
    if parent.get("sha256") and found.manifest.sha256 != parent["sha256"]:
        raise ManifestError(f"parent {candidate} changed since {artifact.path} was derived from it",
                            fix="re-run the stage from the current parent")
    return found


def parent_record(parent: Artifact, child_dir: Path) -> dict[str, Any]:
    """How a child manifest refers to its parent: a path relative to the child's folder, plus hash."""
    try:
        rel = os.path.relpath(parent.path.resolve(), Path(child_dir).resolve())
    except ValueError:  # different drives on Windows
        rel = str(parent.path.resolve())
    return {"path": rel, "sha256": parent.manifest.sha256, "format": parent.manifest.format}
