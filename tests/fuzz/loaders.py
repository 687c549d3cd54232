"""Every loader entry point that reads untrusted bytes, the real seed files to mutate, and the mutator.

A loader passes when it returns or raises an :class:`~edgekit.errors.EdgekitError`; anything else (an
unexpected exception type) is a finding. Native crashes cannot happen here by design: every loader in
the table is pure Python (flatbuffer/protobuf/zip/pickle/YAML readers), which is what makes it safe to
put before the native parsers.
"""

from __future__ import annotations

import random
import struct
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EdgekitError

REPO = Path(__file__).resolve().parents[2]
INTERESTING_INT32 = (0, 1, -1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, -0x80000000, 0x10000000)


def _file(work: Path, name: str, data: bytes) -> Path:
    path = work / name
    path.write_bytes(data)
    return path


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _check_model_file(suffix: str) -> Callable[[bytes, Path], object]:
    def load(data: bytes, work: Path):
        from edgekit.runtime.safety import check_model_file

        return check_model_file(_file(work, f"model{suffix}", data))
    return load


def _parse_tflite(data: bytes, work: Path):
    from edgekit.runtime.tflite_file import parse_tflite

    return parse_tflite(data, path="fuzz.tflite")


def _read_tflite(data: bytes, work: Path):
    from edgekit.runtime.safety import read_tflite

    return read_tflite(_file(work, "graph.tflite", data))


def _read_tflite_metadata(data: bytes, work: Path):
    from edgekit.runtime.metadata import read_tflite_metadata

    return read_tflite_metadata(data)


def _read_onnx_metadata(data: bytes, work: Path):
    from edgekit.runtime.metadata import read_onnx_metadata

    return read_onnx_metadata(_file(work, "meta.onnx", data))


def _onnx_external_data(data: bytes, work: Path):
    from edgekit.runtime.safety import check_onnx_external_data

    if not (work / "weights.bin").is_file():  # the seed's external tensor file, so valid locations resolve
        _file(work, "weights.bin", bytes(120))
    return check_onnx_external_data(_file(work, "external.onnx", data))


def _inspect_keras(data: bytes, work: Path):
    from edgekit.keras_io import inspect_keras_archive

    return inspect_keras_archive(_file(work, "model.keras", data))


def _load_state_dict(data: bytes, work: Path):
    from edgekit.backbones.torch_pickle import load_state_dict

    return load_state_dict(_file(work, "weights.pth", data))


def _parse_recipe(data: bytes, work: Path):
    from edgekit.recipes.schema import parse_recipe

    return parse_recipe(_text(data), source="fuzz.yaml")


def _parse_profile(data: bytes, work: Path):
    from edgekit.devices import parse_profile

    return parse_profile(_text(data), source="fuzz.yaml")


@dataclass(frozen=True)
class Loader:
    name: str
    load: Callable[[bytes, Path], object]
    seeds: tuple[str, ...]  # keys of the seed-file table to mutate


LOADERS: tuple[Loader, ...] = (
    Loader("check_model_file[.tflite]", _check_model_file(".tflite"), ("tflite_float", "tflite_int8")),
    Loader("check_model_file[.onnx]", _check_model_file(".onnx"), ("onnx",)),
    Loader("check_model_file[.keras]", _check_model_file(".keras"), ("keras",)),
    Loader("tflite_file.parse_tflite", _parse_tflite, ("tflite_float", "tflite_int8")),
    Loader("safety.read_tflite", _read_tflite, ("tflite_int8",)),
    Loader("metadata.read_tflite_metadata", _read_tflite_metadata, ("tflite_float",)),
    Loader("metadata.read_onnx_metadata", _read_onnx_metadata, ("onnx",)),
    Loader("safety.check_onnx_external_data", _onnx_external_data, ("onnx_external",)),
    Loader("keras_io.inspect_keras_archive", _inspect_keras, ("keras",)),
    Loader("torch_pickle.load_state_dict", _load_state_dict, ("pth_legacy", "pth_zip")),
    Loader("recipes.parse_recipe", _parse_recipe, ("recipe",)),
    Loader("devices.parse_profile", _parse_profile, ("profile", "profile_ssh")),
)


def mutate(seed: bytes, rng: random.Random) -> bytes:
    """1-6 mutations: bit flips, truncation, overwrites, insertions, and 'interesting' int32s (offsets, sizes)."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, 6)):
        if not data:
            break
        pos = rng.randrange(len(data))
        kind = rng.choice(("flip", "flip", "truncate", "overwrite", "insert", "int32", "int32"))
        if kind == "flip":
            data[pos] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            del data[pos:]
        elif kind == "overwrite":
            chunk = rng.randbytes(rng.randint(1, 16))
            data[pos:pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        else:
            value = rng.choice((*INTERESTING_INT32, len(seed), len(seed) - pos, rng.getrandbits(32)))
            data[pos:pos + 4] = struct.pack("<I", value & 0xFFFFFFFF)
    return bytes(data)


def check(loader: Loader, data: bytes, work: Path) -> str | None:
    """None if the loader returned or raised an EdgekitError; else a one-line description of the finding.

    An EdgekitError raised because memory ran out is a finding too: a few KiB of input should never need GBs
    (fuzz_loaders.py caps its address space so that such an input fails here instead of OOM-killing the machine).
    """
    try:
        loader.load(data, work)
    except EdgekitError as exc:
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, MemoryError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            return None
        where = traceback.extract_tb(cause.__traceback__)[-1] if cause.__traceback__ else None
        return f"MemoryError behind {type(exc).__name__}" + (f" at {Path(where.filename).name}:{where.lineno}"
                                                              if where else "")
    except Exception as exc:  # noqa: BLE001 - an unexpected exception type is exactly what we look for
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return f"{type(exc).__name__}: {str(exc)[:200]} at {Path(where.filename).name}:{where.lineno}"
    return None


def build_seeds(folder: Path, digits: Path) -> dict[str, bytes]:
    """Real, small valid files: converter-written .tflite (float with metadata, int8), tf2onnx .onnx, a tf_keras
    .keras, torch-layout .pth (legacy and zip), an ONNX with external data, the shipped recipe and profiles."""
    import collections
    import sys

    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from test_model_safety import _external_data_model
    from test_runtime import build_tiny_models
    from test_torch_pickle import WRITERS, _Tensor

    models = build_tiny_models(folder / "models", digits)
    seeds = {"tflite_float": models["float"].read_bytes(), "tflite_int8": models["int8"].read_bytes(),
             "onnx": models["onnx"].read_bytes()}
    keras_path = folder / "tiny.keras"
    if not keras_path.is_file():
        from edgekit._tf import import_tf

        _, keras = import_tf()
        inputs = keras.Input((8, 8, 3), batch_size=1)
        outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(
            keras.layers.Conv2D(4, 3)(inputs)))
        keras.Model(inputs, outputs).save(str(keras_path), save_format="keras")
    seeds["keras"] = keras_path.read_bytes()
    storages = {"0": np.arange(12, dtype=np.float32), "1": np.linspace(-1, 1, 6, dtype=np.float32)}
    for layout in ("legacy", "zip"):
        root = collections.OrderedDict(conv=_Tensor("0", 0, (3, 4), (4, 1)), bias=_Tensor("1", 1, (5,), (1,)),
                                       transposed=_Tensor("0", 2, (2, 3), (1, 2)))
        seeds[f"pth_{layout}"] = WRITERS[layout](folder / f"seed-{layout}.pth", root, storages).read_bytes()
    seeds["onnx_external"] = _external_data_model(folder / "external").read_bytes()
    seeds["recipe"] = (REPO / "recipes" / "quickstart.yaml").read_bytes()
    seeds["profile"] = (REPO / "edgekit" / "devices" / "cpu.yaml").read_bytes()
    seeds["profile_ssh"] = (REPO / "devices" / "rpi4.yaml").read_bytes()
    return seeds
