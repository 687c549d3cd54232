"""Read PyTorch ``.pth`` state dicts into numpy arrays without torch, and without running their code.

A ``.pth`` file is a pickle, and unpickling an arbitrary pickle can call any Python function. The
unpickler here resolves only the handful of globals a state dict needs (the tensor-rebuild helpers,
the storage classes and ``OrderedDict``) and refuses every other one with :class:`UnsafeModelError`
before anything runs. Both layouts are read: the legacy one (a sequence of pickles followed by raw
storage bytes, what torch < 1.6 wrote and many weight packages still ship) and the zip archive.

Tensors are materialised only after every stride/offset was checked against the storage size, so a
crafted file cannot make numpy read outside a buffer.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edgekit.errors import ModelFileError, UnsafeModelError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
MAX_STORAGE_BYTES = 2 << 30

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` etc.: only the element dtype is needed."""

    dtype: Any


class _Storage:
    """A storage whose bytes arrive after the pickle (legacy) or from an archive member (zip)."""

    def __init__(self, dtype: Any, numel: int):
        self.dtype = np.dtype(dtype)
        self.numel = int(numel)
        self.array: np.ndarray | None = None


@dataclass
class _LazyTensor:
    """What ``_rebuild_tensor_v2`` returns while the storage bytes are not read yet."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    view: tuple[int, int] | None = None  # legacy storage views: (element offset, size)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> _LazyTensor:
    if isinstance(storage, tuple):  # a legacy view: (root storage, offset, size)
        root, view_offset, view_size = storage
        return _LazyTensor(root, int(storage_offset), tuple(size), tuple(stride), (int(view_offset), int(view_size)))
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


def _refuse_bytearray8(unpickler) -> None:
    raise pickle.UnpicklingError("BYTEARRAY8 (pickle protocol 5) does not occur in a weights file")


# The pure-Python unpickler, not the C one: the C unpickler's memo is an array it grows to twice the index a
# PUT names and then fills, so one 5-byte LONG_BINPUT of 1,175,087,203 in a 168-byte file made it allocate and
# write 19 GB (the OOM kill in `make bench`'s fuzzing). Here the memo is a dict; a .pth's pickle is small.
# Lengths a pickle states are bounded by reading from memory (BytesIO.read(n) returns what is there, where a
# file's read(n) allocates n bytes first); BYTEARRAY8 would zero-fill its stated length before reading, so it
# is refused.
class _RestrictedUnpickler(pickle._Unpickler):
    dispatch = {**pickle._Unpickler.dispatch, pickle.BYTEARRAY8[0]: _refuse_bytearray8}

    def __init__(self, handle, *, path: Path, storages: dict[str, _Storage], legacy: bool):
        super().__init__(handle)
        self._path = path
        self._storages = storages
        self._legacy = legacy

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeModelError(
                f"{self._path} refers to the Python global {module}.{name}, which a weights file does not need "
                "(loading it could run arbitrary code)",
                fix="only load state dicts (torch.save(model.state_dict(), path)) from a source you trust") from None

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise UnsafeModelError(f"{self._path} holds a persistent object other than a tensor storage: {pid!r:.80}",
                                   fix="only load state dicts saved with torch.save(model.state_dict(), path)")
        try:
            if self._legacy:
                storage_type, key, _location, numel, view = pid[1:6]
            else:
                (storage_type, key, _location, numel), view = pid[1:5], None
        except ValueError:
            raise ModelFileError(f"{self._path} has a malformed storage record {pid!r:.80}",
                                 fix="re-download the weights file") from None
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise ModelFileError(f"{self._path} has an unsupported storage record {pid!r:.80}",
                                 fix="save the weights as float32/int tensors")
        key = key.decode() if isinstance(key, bytes) else str(key)
        storage = self._storages.setdefault(key, _Storage(storage_type.dtype, numel))
        if view is not None:
            _view_key, view_offset, view_size = view
            return storage, view_offset, view_size
        return storage


def _materialise(tensor: _LazyTensor, *, path: Path, name: str) -> np.ndarray:
    data = tensor.storage.array
    if data is None:
        raise ModelFileError(f"{path}: the storage for tensor {name!r} is missing", fix="re-download the weights file")
    if tensor.view is not None:
        start, size = tensor.view
        if start < 0 or size < 0 or start + size > data.size:
            raise ModelFileError(f"{path}: tensor {name!r} views outside its storage", fix="re-download the weights file")
        data = data[start:start + size]
    shape, stride = tensor.shape, tensor.stride
    if len(shape) != len(stride) or any(not isinstance(v, int) or v < 0 for v in (*shape, *stride, tensor.offset)):
        raise ModelFileError(f"{path}: tensor {name!r} has an invalid shape {shape} / stride {stride}",
                             fix="re-download the weights file")
    count = math.prod(shape)  # exact: an int64 product of a corrupt shape can wrap around to a small number
    if count:
        last = tensor.offset + sum((dim - 1) * step for dim, step in zip(shape, stride))
        if last >= data.size:
            raise ModelFileError(f"{path}: tensor {name!r} reaches past the end of its storage",
                                 fix="re-download the weights file (it is truncated or corrupt)")
    if count > data.size:  # stride 0 repeats elements: a weight never does, and the copy below would be huge
        raise ModelFileError(f"{path}: tensor {name!r} has more elements than its storage ({count} > {data.size})",
                             fix="re-download the weights file (it is corrupt)")
    view = np.lib.stride_tricks.as_strided(data[tensor.offset:] if count else data[:0], shape=shape,
                                           strides=tuple(step * data.itemsize for step in stride), writeable=False)
    return np.array(view, copy=True)


def _flatten(obj: Any, *, path: Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The tensors of a (possibly nested, e.g. ``{"state_dict": ...}``) dict, with dotted names."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(_flatten(value, path=path, prefix=f"{prefix}{key}."))
    elif isinstance(obj, _LazyTensor):
        out[prefix[:-1]] = _materialise(obj, path=path, name=prefix[:-1])
    return out


def _read_legacy(handle: BinaryIO, path: Path) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}

    def plain() -> Any:
        return _RestrictedUnpickler(handle, path=path, storages={}, legacy=True).load()

    if plain() != LEGACY_MAGIC:
        raise ModelFileError(f"{path} is not a PyTorch weights file (bad magic number)",
                             fix="pass a .pth file written by torch.save")
    plain()  # protocol version
    plain()  # sys info (byte order, type sizes)
    root = _RestrictedUnpickler(handle, path=path, storages=storages, legacy=True).load()
    keys = plain()
    if not isinstance(keys, list):
        raise ModelFileError(f"{path} has a malformed storage index", fix="re-download the weights file")
    for key in keys:
        storage = storages.get(key.decode() if isinstance(key, bytes) else str(key))
        if storage is None:
            raise ModelFileError(f"{path} lists an unknown storage {key!r}", fix="re-download the weights file")
        header = handle.read(8)
        if len(header) != 8:
            raise ModelFileError(f"{path} is truncated (storage {key!r} missing)", fix="re-download the weights file")
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * storage.dtype.itemsize
        if numel != storage.numel or nbytes > MAX_STORAGE_BYTES:
            raise ModelFileError(f"{path}: storage {key!r} has {numel} elements, {storage.numel} expected",
                                 fix="re-download the weights file")
        raw = handle.read(nbytes)
        if len(raw) != nbytes:
            raise ModelFileError(f"{path} is truncated (storage {key!r} has {len(raw)} of {nbytes} bytes)",
                                 fix="re-download the weights file")
        storage.array = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    return _flatten(root, path=path)


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ModelFileError(f"{path} is a zip but not a PyTorch archive (no */data.pkl)",
                                 fix="pass a .pth file written by torch.save")
        prefix = pickles[0][: -len("data.pkl")]
        order = "<"
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() == b"big":
            order = ">"
        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as handle:
            root = _RestrictedUnpickler(handle, path=path, storages=storages, legacy=False).load()
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise ModelFileError(f"{path} lacks the storage member {member}", fix="re-download the weights file")
            nbytes = storage.numel * storage.dtype.itemsize
            if nbytes > MAX_STORAGE_BYTES or archive.getinfo(member).file_size < nbytes:
                raise ModelFileError(f"{path}: storage {member} is shorter than its {storage.numel} elements",
                                     fix="re-download the weights file")
            with archive.open(member) as member_handle:
                storage.array = np.frombuffer(member_handle.read(nbytes), dtype=storage.dtype.newbyteorder(order))
    return _flatten(root, path=path)


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch ``.pth`` state dict as ``{"features.0.0.weight": ndarray, ...}``.

    Raises :class:`UnsafeModelError` for a pickle that names any global besides the tensor-rebuild
    ones, and :class:`ModelFileError` for a missing, truncated or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"weights file {path} does not exist", fix="check the path (or reinstall its package)")
    try:
        if zipfile.is_zipfile(path):
            tensors = _read_zip(path)
        else:
            tensors = _read_legacy(io.BytesIO(path.read_bytes()), path)
    except (UnsafeModelError, ModelFileError):
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, zipfile.BadZipFile, MemoryError, RecursionError, UnicodeDecodeError, OSError,
            OverflowError, NotImplementedError, RuntimeError) as exc:  # zipfile: unsupported/encrypted members
        raise ModelFileError(f"{path} is not a readable PyTorch weights file ({type(exc).__name__}: {exc})",
                             fix="re-download the weights file, or pass a .pth written by torch.save") from exc
    if not tensors:
        raise ModelFileError(f"{path} holds no tensors", fix="pass a state dict (torch.save(model.state_dict(), path))")
    return tensors
