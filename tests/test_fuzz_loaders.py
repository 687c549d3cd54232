"""Bounded fuzzing of every loader that reads untrusted bytes: only edgekit's typed errors may come out.

Two inputs per loader: random bytes, and mutations (bit flips, truncations, overwrites, insertions,
'interesting' int32 offsets) of real valid files written by the real converters/writers. The longer run
is ``python benchmarks/fuzz_loaders.py``.
"""

from __future__ import annotations

import pytest
from fuzz.loaders import LOADERS, Loader, build_seeds, check, mutate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = 120
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="session")
def seeds(tmp_path_factory, digits_dir) -> dict[str, bytes]:
    return build_seeds(tmp_path_factory.getbasetemp() / "fuzz-seeds", digits_dir)


@pytest.fixture
def work(tmp_path):
    return tmp_path


def test_every_seed_file_is_accepted_by_its_loaders(seeds, work):
    """The mutations start from files the loaders accept, so they probe the deep parsing paths."""
    for loader in LOADERS:
        for name in loader.seeds:
            loader.load(seeds[name], work)


@pytest.mark.parametrize("loader", LOADERS, ids=lambda loader: loader.name)
def test_random_bytes_raise_only_typed_errors(loader: Loader, work):
    @FUZZ
    @given(data=st.binary(max_size=4096))
    def probe(data: bytes) -> None:
        assert check(loader, data, work) is None

    probe()


@pytest.mark.parametrize("loader", LOADERS, ids=lambda loader: loader.name)
def test_mutated_real_files_raise_only_typed_errors(loader: Loader, seeds, work):
    @FUZZ
    @given(seed=st.sampled_from(loader.seeds), rng=st.randoms(use_true_random=False))
    def probe(seed: str, rng) -> None:
        data = mutate(seeds[seed], rng)
        finding = check(loader, data, work)
        assert finding is None, f"{loader.name} on a mutated {seed} ({len(data)} bytes): {finding}"

    probe()


def _zip_with_patched_central_header(member: str, offset: int, value: int) -> bytes:
    """A one-member zip whose central directory field at ``offset`` (flags=8, method=10) is ``value``."""
    import io
    import struct
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, b"{}")
    data = bytearray(buffer.getvalue())
    header = data.rfind(b"PK\x01\x02")
    data[header + offset:header + offset + 2] = struct.pack("<H", value)
    return bytes(data)


def _nul_external_location(work) -> bytes:
    from test_model_safety import _external_data_model

    return _external_data_model(work / "nul", "weights\0.bin").read_bytes()


@pytest.mark.parametrize(("loader_name", "make"), [
    ("safety.check_onnx_external_data", _nul_external_location),
    ("torch_pickle.load_state_dict", lambda work: b"\x80\x04\x8e" + (2 ** 63 + 5).to_bytes(8, "little")),
    ("torch_pickle.load_state_dict", lambda work: _zip_with_patched_central_header("archive/data.pkl", 10, 99)),
    ("torch_pickle.load_state_dict", lambda work: _zip_with_patched_central_header("archive/data.pkl", 8, 1)),
    ("keras_io.inspect_keras_archive", lambda work: _zip_with_patched_central_header("config.json", 10, 99)),
    ("keras_io.inspect_keras_archive", lambda work: _zip_with_patched_central_header("config.json", 8, 1)),
    ("keras_io.inspect_keras_archive", lambda work: _zip_with_patched_central_header("config.json", 6, 189)),
], ids=["onnx-nul-in-location", "pth-binbytes8-overflow", "pth-zip-method-99", "pth-zip-encrypted",
        "keras-zip-method-99", "keras-zip-encrypted", "keras-zip-version-18.9"])
def test_past_fuzz_findings_are_typed_errors(loader_name, make, work):
    """Inputs the fuzzer (or its review) found raising ValueError/OverflowError/NotImplementedError/RuntimeError."""
    loader = next(loader for loader in LOADERS if loader.name == loader_name)
    assert check(loader, make(work), work) is None


def test_a_typed_error_caused_by_running_out_of_memory_is_a_finding(work):
    """torch_pickle turned the 19 GB memo allocation of a 168-byte file into a ModelFileError under a memory cap,
    which hid it from the fuzzer; without the cap the process was OOM-killed."""
    from edgekit.errors import ModelFileError

    def exhausted(data: bytes, work) -> None:
        try:
            raise MemoryError
        except MemoryError as exc:
            raise ModelFileError("model.pth is not a readable PyTorch weights file (MemoryError: )",
                                 fix="re-download it") from exc

    def refused(data: bytes, work) -> None:
        raise ModelFileError("model.pth is truncated", fix="re-download it")

    finding = check(Loader("exhausted", exhausted, ()), b"x", work)
    assert finding is not None and finding.startswith("MemoryError behind ModelFileError")
    assert check(Loader("refused", refused, ()), b"x", work) is None
