"""The torch-free .pth reader: real weight files load, and nothing but tensors can come out of a pickle."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgekit.backbones import get_backbone, locate_weights
from edgekit.backbones.torch_pickle import LEGACY_MAGIC, load_state_dict
from edgekit.errors import ModelFileError, UnsafeModelError


class _Global:
    """A ``module.name`` reference written as a pickle GLOBAL without importing the module (torch is absent)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self):  # pickle's save_reduce insists the callable be callable
        raise AssertionError("never called")


class _StorageRef:
    def __init__(self, key: str):
        self.key = key


class _Tensor:
    def __init__(self, key: str, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]):
        self.key, self.offset, self.shape, self.stride = key, offset, shape, stride

    def __reduce__(self):
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (_StorageRef(self.key), self.offset, self.shape, self.stride, False, collections.OrderedDict()))


class _Pickler(pickle._Pickler):
    """Writes torch's pickle layout: tensors reduce to _rebuild_tensor_v2, storages are persistent ids."""

    def __init__(self, handle, storages: dict[str, np.ndarray], *, legacy: bool):
        super().__init__(handle, protocol=2)
        self.storages, self.legacy = storages, legacy

    def save_marker(self, obj: _Global) -> None:
        self.write(b"c" + f"{obj.module}\n{obj.name}\n".encode())

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[_Global] = save_marker

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            storage_type = _Global("torch", "FloatStorage")
            record = ("storage", storage_type, obj.key, "cpu", self.storages[obj.key].size)
            return record + (None,) if self.legacy else record
        return None


def _dumps(obj, storages: dict[str, np.ndarray] | None = None, *, legacy: bool = True) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, storages or {}, legacy=legacy).dump(obj)
    return buffer.getvalue()


def write_legacy_pth(path: Path, root, storages: dict[str, np.ndarray]) -> Path:
    """torch.save's legacy layout: magic, protocol, sys info, the object, storage keys, raw storages."""
    parts = [_dumps(LEGACY_MAGIC), _dumps(1001), _dumps({"little_endian": True}), _dumps(root, storages),
             _dumps(list(storages))]
    for data in storages.values():
        parts.append(struct.pack("<q", data.size) + data.astype("<f4").tobytes())
    path.write_bytes(b"".join(parts))
    return path


def write_zip_pth(path: Path, root, storages: dict[str, np.ndarray]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _dumps(root, storages, legacy=False))
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data.astype("<f4").tobytes())
    return path


WRITERS = {"legacy": write_legacy_pth, "zip": write_zip_pth}


class _RunsCommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_real_mobilenet_v2_weights_load_as_finite_float_arrays():
    state = load_state_dict(locate_weights(get_backbone("mobilenet_v2")))
    assert len(state) == 314
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state["classifier.1.weight"].shape == (1000, 1280)
    assert state["features.0.1.num_batches_tracked"].dtype == np.int64
    assert all(np.isfinite(v).all() for v in state.values() if v.dtype == np.float32)


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_tensors_round_trip_including_offsets_and_transposed_strides(tmp_path, layout):
    storage = np.arange(30, dtype=np.float32)
    root = collections.OrderedDict(
        plain=_Tensor("0", 0, (2, 3), (3, 1)),
        offset=_Tensor("0", 6, (4,), (1,)),
        transposed=_Tensor("0", 10, (3, 2), (1, 3)),
        scalar=_Tensor("0", 29, (), ()),
        nested={"inner": _Tensor("0", 12, (2, 2, 2), (4, 2, 1))},
    )
    state = load_state_dict(WRITERS[layout](tmp_path / "w.pth", root, {"0": storage}))
    np.testing.assert_array_equal(state["plain"], storage[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["offset"], storage[6:10])
    np.testing.assert_array_equal(state["transposed"], storage[10:16].reshape(2, 3).T)
    np.testing.assert_array_equal(state["scalar"], np.float32(29))
    np.testing.assert_array_equal(state["nested.inner"], storage[12:20].reshape(2, 2, 2))
    assert state["transposed"].flags.writeable


@pytest.mark.parametrize("where", ["first pickle", "inside the state dict", "zip archive"])
def test_pickled_os_system_is_refused_and_never_runs(tmp_path, where):
    sentinel = tmp_path / "sentinel"
    evil = _RunsCommand(f"touch {sentinel}")
    path = tmp_path / "evil.pth"
    if where == "first pickle":
        path.write_bytes(pickle.dumps(evil, protocol=2))
    elif where == "inside the state dict":
        write_legacy_pth(path, {"w": _Tensor("0", 0, (1,), (1,)), "x": evil}, {"0": np.zeros(1, np.float32)})
    else:
        write_zip_pth(path, {"x": evil}, {})
    with pytest.raises(UnsafeModelError) as info:
        load_state_dict(path)
    assert str(path) in str(info.value) and "system" in str(info.value)
    assert not sentinel.exists()


def test_any_global_besides_tensor_rebuild_is_refused_by_name(tmp_path):
    path = tmp_path / "counter.pth"
    write_legacy_pth(path, {"c": collections.Counter("ab")}, {})
    with pytest.raises(UnsafeModelError, match="collections.Counter"):
        load_state_dict(path)


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
    path = write_legacy_pth(tmp_path / "oob.pth", {"w": _Tensor("0", 2, (4, 4), (4, 1))},
                            {"0": np.zeros(8, np.float32)})
    with pytest.raises(ModelFileError, match="past the end"):
        load_state_dict(path)


def test_a_tensor_larger_than_its_storage_is_refused_before_it_is_copied(tmp_path):
    """Stride 0 repeats one element: (200000, 200000) over 8 floats passed the bounds check, and the copy tried
    to allocate 160 GB (`make bench`'s fuzzer was OOM-killed at 16 GB resident)."""
    for shape in [(200_000, 200_000), (2 ** 32, 2 ** 32)]:  # the second's int64 product wraps around to 0
        path = write_legacy_pth(tmp_path / "huge.pth", {"w": _Tensor("0", 0, shape, (0, 0))},
                                {"0": np.zeros(8, np.float32)})
        with pytest.raises(ModelFileError, match="more elements than its storage"):
            load_state_dict(path)


@pytest.mark.parametrize("content", ["empty", "truncated", "random", "text"])
def test_broken_files_raise_model_file_error(tmp_path, content):
    real = locate_weights(get_backbone("mobilenet_v2")).read_bytes()
    data = {"empty": b"", "truncated": real[: len(real) // 2],
            "random": np.random.default_rng(0).bytes(4096), "text": b"not a model\n" * 10}[content]
    path = tmp_path / f"{content}.pth"
    path.write_bytes(data)
    with pytest.raises(ModelFileError) as info:
        load_state_dict(path)
    assert str(path) in str(info.value) and info.value.fix


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_state_dict(tmp_path / "absent.pth")


@pytest.mark.parametrize("payload", [
    b"\x80\x02N" + b"r" + struct.pack("<I", 2**31 - 1) + b".",  # None, LONG_BINPUT slot 2**31 - 1: a 32 GB memo
    b"\x80\x05\x96" + struct.pack("<Q", 1 << 34) + b"tiny",  # BYTEARRAY8 of 16 GiB: zero-filled before reading
    b"\x80\x04\x8e" + struct.pack("<Q", 1 << 34) + b"tiny",  # BINBYTES8 of 16 GiB: a file's read(n) allocates n
    b"\x80\x04\x95" + struct.pack("<Q", 1 << 34) + b"tiny",  # FRAME of 16 GiB: read whole, as above
], ids=["memo-index", "bytearray8", "binbytes8", "frame"])
def test_a_length_or_index_in_a_tiny_file_allocates_nothing_large(tmp_path, payload):
    """The fuzzer's OOM kill: a 168-byte .pth whose LONG_BINPUT made the C unpickler grow its memo array to 19 GB;
    and the other opcodes whose stated size was allocated before the file was read. Each load runs in a child
    capped at 2 GiB of address space (safe for the machine either way); a MemoryError behind the error fails."""
    import resource
    import subprocess
    import sys

    path = tmp_path / "tiny.pth"
    path.write_bytes(payload)
    script = ("import sys\nfrom edgekit.backbones.torch_pickle import load_state_dict\n"
              "from edgekit.errors import ModelFileError\n"
              "try:\n    load_state_dict(sys.argv[1])\nexcept ModelFileError as exc:\n    print(exc.message)")
    limit = 2 << 30
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert done.returncode == 0, done.stderr[-500:]
    assert str(path) in done.stdout and "MemoryError" not in done.stdout, done.stdout
