"""Model files that must never reach a native parser unchecked: each becomes a clear error naming the file."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from test_runtime import LABELS, PRE, build_tiny_models

from edgekit.errors import ModelFileError, UnsafeModelError
from edgekit.runtime import Predictor, check_model_file, check_onnx_external_data, verify_tflite
from edgekit.runtime import safety


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits_dir) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "runtime-models", digits_dir)


def _external_data_model(folder: Path, location: str = "weights.bin") -> Path:
    """A real ONNX graph (mean-pool -> MatMul -> Softmax) whose weight lives in an external file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weight = numpy_helper.from_array(np.linspace(-1, 1, 30, dtype=np.float32).reshape(3, 10), "w")
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"])],
        "pool_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 32, 32, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    (folder / "weights.bin").write_bytes(weight.raw_data)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "120")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    model.graph.initializer[0].CopyFrom(weight)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("name, content, expected", [
    ("empty.tflite", b"", "empty (0 bytes)"),
    ("random.tflite", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not a TFLite or ONNX"),
    ("random.onnx", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), "not a TFLite or ONNX"),
    ("pointer.onnx", b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 1234\n",
     "Git LFS pointer"),
    ("archive.tflite", b"PK\x03\x04" + b"\x00" * 100, "contains a keras model"),
])
def test_bad_model_bytes_raise_model_file_error_naming_the_file(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=re.escape(expected)) as info:
        check_model_file(path)
    assert name in info.value.message and info.value.fix
    with pytest.raises(ModelFileError, match=name):
        Predictor(path, labels=LABELS, preprocessing=PRE.to_dict())


def test_lfs_pointer_fix_says_git_lfs_pull(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n")
    with pytest.raises(ModelFileError) as info:
        check_model_file(path)
    assert "git lfs pull" in info.value.fix


def test_truncated_tflite_is_caught_in_python_before_the_interpreter(tiny_models, tmp_path):
    data = tiny_models["float"].read_bytes()
    path = tmp_path / "half.tflite"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="half.tflite is a truncated or corrupt"):
        check_model_file(path)


def test_read_tflite_reads_the_file_once_and_checks_those_bytes(tiny_models, tmp_path, opens_of):
    with opens_of(tiny_models["int8"]) as opens:
        graph = safety.read_tflite(tiny_models["int8"])
    assert opens() == 1
    assert graph.main.operators and graph.size_bytes == tiny_models["int8"].stat().st_size
    data = tiny_models["int8"].read_bytes()
    half = tmp_path / "half.tflite"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="half.tflite is a truncated or corrupt"):
        safety.read_tflite(half)
    named = tmp_path / "model.tflite"
    named.write_bytes(tiny_models["onnx"].read_bytes())
    with pytest.raises(ModelFileError, match="named .tflite but contains a onnx model"):
        safety.read_tflite(named)


def test_truncated_onnx_is_not_recognised(tiny_models, tmp_path):
    data = tiny_models["onnx"].read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelFileError, match="cut.onnx is not a TFLite or ONNX model"):
        check_model_file(path)


def test_onnx_named_tflite_and_tflite_named_onnx_are_refused(tiny_models, tmp_path):
    onnx_as_tflite = tmp_path / "model.tflite"
    onnx_as_tflite.write_bytes(tiny_models["onnx"].read_bytes())
    with pytest.raises(ModelFileError, match=r"model.tflite is named .tflite but contains a onnx model") as info:
        Predictor(onnx_as_tflite)
    assert "rename it to .onnx" in info.value.fix
    tflite_as_onnx = tmp_path / "model.onnx"
    tflite_as_onnx.write_bytes(tiny_models["float"].read_bytes())
    with pytest.raises(ModelFileError, match=r"named .onnx but contains a tflite model"):
        check_model_file(tflite_as_onnx)
    assert check_model_file(tflite_as_onnx, expected_format="tflite") == "tflite"


def _corrupt_weights_shape(model_bytes: bytes) -> bytes:
    """A structurally valid flatbuffer whose conv filter shape contradicts its weights buffer."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    graph = model.subgraphs[0]
    weights = next(t for t in graph.tensors if len(t.shape) == 4 and model.buffers[t.buffer].data is not None)
    weights.shape = np.array([16, 300, 300, 3], dtype=np.int32)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_malformed_flatbuffer_is_verified_in_a_subprocess_and_cached(tiny_models, tmp_path):
    path = tmp_path / "malformed.tflite"
    path.write_bytes(_corrupt_weights_shape(tiny_models["bare"].read_bytes()))
    assert check_model_file(path) == "tflite"  # passes the cheap checks: only the interpreter can tell
    with pytest.raises(ModelFileError, match="malformed.tflite cannot be loaded by the TFLite interpreter"):
        verify_tflite(path)
    digest = safety.sha256_file(path)
    assert safety._VERIFIED[digest]  # the failure is remembered; no second subprocess for this file
    with pytest.raises(ModelFileError, match="malformed.tflite"):
        Predictor(path, labels=LABELS, preprocessing=PRE.to_dict())
    verify_tflite(tiny_models["float"])
    assert safety._VERIFIED[safety.sha256_file(tiny_models["float"])] is None


def test_a_fresh_process_verifies_by_fork_and_still_refuses_a_malformed_model(tiny_models, tmp_path):
    """`edgekit predict`'s case: no TensorFlow loaded, so the verifier forks (cheap); a model the interpreter
    cannot run is still refused in one line, and a good one passes. Pytest's own process has TensorFlow, so
    this runs in a child of its own."""
    import subprocess
    import sys

    path = tmp_path / "malformed.tflite"
    path.write_bytes(_corrupt_weights_shape(tiny_models["bare"].read_bytes()))
    script = ("import sys\nfrom edgekit.errors import ModelFileError\nfrom edgekit.runtime import safety\n"
              "assert safety._fork_is_safe(), 'a fresh process should fork its verifier'\n"
              "safety.verify_tflite(sys.argv[2])\n"
              "try:\n    safety.verify_tflite(sys.argv[1])\nexcept ModelFileError as exc:\n    print(exc.message)\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", script, str(path), str(tiny_models["float"])], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "malformed.tflite cannot be loaded by the TFLite interpreter" in done.stdout


def test_onnx_external_data_beside_the_model_loads_and_predicts(tmp_path):
    path = _external_data_model(tmp_path / "ok")
    assert check_onnx_external_data(path) == [(tmp_path / "ok" / "weights.bin").resolve()]
    predictor = Predictor(path, labels=LABELS, preprocessing=PRE.to_dict())
    ranked = predictor.predict(np.full((32, 32, 3), 255, dtype=np.uint8), top_k=1)
    # mean pixel (255-127.5)/127.5 = 1 in every channel -> logits are the column sums of w; the last is largest
    assert ranked[0][0] == LABELS[-1]


@pytest.mark.parametrize("location, expected", [
    ("../outside.bin", r"climbs out of the model's folder"),
    ("/etc/passwd", "an absolute path"),
    ("sub/../../outside.bin", r"climbs out of the model's folder"),
])
def test_onnx_external_data_outside_the_folder_is_refused_before_onnxruntime(tmp_path, location, expected):
    path = _external_data_model(tmp_path / "model", location)
    (tmp_path / "outside.bin").write_bytes(b"\x00" * 120)
    with pytest.raises(UnsafeModelError, match=expected) as info:
        Predictor(path, labels=LABELS, preprocessing=PRE.to_dict())
    assert "model.onnx" in info.value.message and "'w'" in info.value.message


def test_onnx_external_data_symlink_leading_outside_is_refused(tmp_path):
    secret = tmp_path / "elsewhere" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"\x00" * 120)
    path = _external_data_model(tmp_path / "model", "link.bin")
    os.symlink(secret, tmp_path / "model" / "link.bin")
    with pytest.raises(UnsafeModelError, match="outside"):
        check_model_file(path)


def test_onnx_external_data_file_missing_is_a_model_file_error(tmp_path):
    path = _external_data_model(tmp_path / "model", "gone.bin")
    with pytest.raises(ModelFileError, match="missing") as info:
        check_model_file(path)
    assert not isinstance(info.value, UnsafeModelError)


def test_missing_and_folder_paths_are_model_file_errors(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        check_model_file(tmp_path / "nope.tflite")
    with pytest.raises(ModelFileError, match="not a file"):
        check_model_file(tmp_path)
