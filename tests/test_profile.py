"""`edgekit profile` and the profiling harness, on real tiny models converted with the real converters.

``tiny_models``: a hand-built tf_keras CNN (~1M parameters, mostly one Dense layer, so int8 vs
float shows in memory) as float .tflite, int8 .tflite and float .onnx. ``digits_pair``: a small
CNN trained on the embedded digits, saved as a float .keras artifact, and its int8 .tflite child
whose manifest names it as parent.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import DeviceUnavailableError, GateFailedError, UsageError


def _saved_model(model, folder: Path, tf) -> str:
    tf.saved_model.save(model, str(folder))
    return str(folder)


def _convert(tf, saved_model: str, representative=None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([row[None]] for row in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    import tf2onnx

    from edgekit._tf import import_tf

    tf, keras = import_tf()
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("tiny_models")
    inputs = keras.Input((48, 48, 3), batch_size=1)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.Dense(10, activation="softmax")(keras.layers.Dense(256, activation="relu")(keras.layers.Flatten()(x)))
    model = keras.Model(inputs, x)
    saved = _saved_model(model, folder / "saved_model", tf)
    calibration = np.random.default_rng(0).uniform(-1, 1, (16, 48, 48, 3)).astype(np.float32)
    (folder / "float.tflite").write_bytes(_convert(tf, saved))
    (folder / "int8.tflite").write_bytes(_convert(tf, saved, calibration))
    tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((1, 48, 48, 3), tf.float32, name="input"),),
                               opset=13, output_path=str(folder / "float.onnx"))
    return {name: folder / name for name in ("float.tflite", "int8.tflite", "float.onnx")}


def build_digits_pair(root: Path, digits_dir: Path):
    """(float .keras artifact, int8 .tflite artifact whose manifest names the float one as parent).

    A small CNN trained from scratch on the digits (learns them in seconds); also used by
    benchmarks/profile_accuracy.py.
    """
    from edgekit._tf import import_tf
    from edgekit.artifacts import Manifest, Preprocessing, TrainingData, parent_record, write_artifact
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder
    from edgekit.keras_io import save_keras_model

    tf, keras = import_tf()
    keras.utils.set_random_seed(0)
    pre = Preprocessing(size=(32, 32), mean=(127.5,) * 3, std=(127.5,) * 3)
    folder = scan_image_folder(digits_dir / "train")
    pixels, labels = load_folder_arrays(folder, pre)
    inputs = keras.Input((32, 32, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, x)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    train = normalize(pixels, pre)
    model.fit(train, labels, epochs=12, batch_size=32, verbose=0)
    common = {"labels": folder.classes, "preprocessing": pre.to_dict()}
    parent = write_artifact(root / "float", "model.keras", Manifest(format="keras", artifact="model.keras",
                                                                    stage="finetune", **common,
                                                                    training=TrainingData(folder=str(digits_dir / "train"))),
                            writer=lambda tmp: save_keras_model(model, tmp))
    saved = _saved_model(model, root / "saved_model", tf)
    int8_bytes = _convert(tf, saved, train[:64])
    child = write_artifact(root / "int8", "model.tflite",
                           Manifest(format="tflite", artifact="model.tflite", stage="compress",
                                    parent=parent_record(parent, root / "int8"), **common),
                           writer=lambda tmp: tmp.write_bytes(int8_bytes))
    return parent, child


@pytest.fixture(scope="session")
def digits_pair(tmp_path_factory, digits_dir):
    return build_digits_pair(tmp_path_factory.mktemp("digits_pair"), digits_dir)


# --- latency and memory ---------------------------------------------------------------------------------------


def test_latency_stats_are_ordered_and_the_thread_count_is_recorded(tiny_models):
    from edgekit.profiling import profile

    result = profile(model=tiny_models["float.tflite"], devices=("cpu-1t",), runs=30, warmup=3)
    device = result["devices"]["cpu-1t"]
    stats = device["latency"]
    assert stats["count"] == 30 == len(device["times_ms"])
    assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert stats["min_ms"] <= stats["mean_ms"] <= stats["max_ms"] and stats["std_ms"] >= 0
    assert device["threads"] == 1 and device["init_ms"] > 0 and device["first_inference_ms"] > 0
    assert device["backend"] == "edgekit:ai_edge_litert"


def test_threads_option_overrides_the_profile(tiny_models):
    from edgekit.profiling import profile

    result = profile(model=tiny_models["int8.tflite"], devices=("cpu-1t",), runs=3, warmup=0, threads=2)
    assert result["devices"]["cpu-1t"]["threads"] == 2


def test_time_budget_runs_until_the_budget_is_spent(tiny_models):
    from edgekit.profiling import profile

    result = profile(model=tiny_models["int8.tflite"], devices=("cpu-1t",), runs=1, warmup=0, budget_s=0.3)
    stats = result["devices"]["cpu-1t"]["latency"]
    assert stats["count"] > 1
    assert sum(result["devices"]["cpu-1t"]["times_ms"]) <= 400


def test_memory_delta_is_positive_and_smaller_for_int8_than_float(tiny_models):
    from edgekit.profiling import profile

    deltas = {}
    for name in ("float.tflite", "int8.tflite"):
        memory = profile(model=tiny_models[name], devices=("cpu-1t",), runs=2, warmup=0)["devices"]["cpu-1t"]["memory"]
        assert memory["peak_delta_mib"] > 0
        assert memory["peak_rss_mib"] > memory["baseline_peak_mib"] > 0
        assert memory["model_file_mib"] == pytest.approx(tiny_models[name].stat().st_size / 2**20, abs=1e-3)
        assert memory["activation_mib_estimate"] > 0 and "estimate" in memory["activation_note"]
        deltas[name] = memory
    # ~1M parameters: 3.8 MiB of float weights against 1 MiB of int8 ones.
    assert deltas["int8.tflite"]["peak_delta_mib"] < deltas["float.tflite"]["peak_delta_mib"] - 2
    assert deltas["int8.tflite"]["activation_mib_estimate"] < deltas["float.tflite"]["activation_mib_estimate"]


def test_peak_memory_repeats_within_one_mib(tiny_models):
    from edgekit.runtime.latency import measure_local
    from edgekit.profiling.memory import memory_summary

    deltas = [memory_summary(measure_local(tiny_models["float.tflite"], accelerator="cpu", threads=1, runs=1, warmup=0),
                             tiny_models["float.tflite"])["peak_delta_mib"] for _ in range(3)]
    assert max(deltas) - min(deltas) < 1.0, deltas


def test_onnx_gets_top_ops_and_tflite_says_per_op_timing_is_unavailable(tiny_models):
    from edgekit.profiling import profile

    onnx = profile(model=tiny_models["float.onnx"], devices=("cpu-1t",), runs=10, warmup=1)["devices"]["cpu-1t"]
    ops = onnx["op_profile"]["ops"]
    assert {"MatMul", "Conv"} <= {op["op"] for op in ops}
    assert [op["total_us"] for op in ops] == sorted((op["total_us"] for op in ops), reverse=True)
    assert onnx["backend"] == "edgekit:onnxruntime" and onnx["memory"]["activation_mib_estimate"] is None
    tflite = profile(model=tiny_models["int8.tflite"], devices=("cpu-1t",), runs=2, warmup=0)["devices"]["cpu-1t"]
    assert "unavailable" in tflite["op_profile"]["reason"]


def test_cpu_reference_runs_without_xnnpack(tiny_models):
    from edgekit.profiling import profile

    device = profile(model=tiny_models["float.tflite"], devices=("cpu-reference",), runs=5, warmup=1)["devices"]["cpu-reference"]
    assert device["accelerator"] == "cpu-reference" and device["latency"]["count"] == 5


# --- accuracy loss --------------------------------------------------------------------------------------------


def test_accuracy_on_the_parents_training_images_is_labelled_as_such(digits_pair, digits_dir):
    from edgekit.profiling.accuracy import accuracy_loss

    _, child = digits_pair
    change = accuracy_loss(child, digits_dir / "train", bound=0.1)["change"]
    assert change["source_is_training_data"]
    assert any("trained on" in w for w in change["warnings"])
    assert any("cannot resolve a 0.1-point drop" in w for w in change["warnings"])


def test_accuracy_loss_compares_the_int8_child_with_its_float_parent(digits_pair, digits_dir, tmp_path):
    from edgekit.profiling import profile

    parent, child = digits_pair
    result = profile(model=child.directory, devices=("cpu-1t",), data=digits_dir / "test", runs=3, warmup=0,
                     report_dir=tmp_path / "report")
    accuracy = result["accuracy"]
    model, reference = accuracy["model"], accuracy["parent"]
    assert accuracy["parent_path"] == str(parent.path.resolve())
    assert reference["accuracy"] > 0.5, "the float parent learned the digits"
    assert accuracy["accuracy_drop"] == pytest.approx((reference["accuracy"] - model["accuracy"]) * 100, abs=1e-3)
    assert 0.8 <= accuracy["top1_agreement"] <= 1.0
    change = accuracy["change"]
    assert change["images"] == accuracy["images"] and change["top1_agreement"] == accuracy["top1_agreement"]
    assert change["interval95_points"][0] <= accuracy["accuracy_drop"] <= change["interval95_points"][1]
    assert not change.get("source_is_training_data") and not change["warnings"]
    assert "top5_accuracy" in model and "top5_drop" in accuracy
    assert set(model["per_class"]) == set(parent.manifest.labels)
    assert set(model["per_class"]["3"]) == {"precision", "recall", "f1", "support"}
    assert np.asarray(model["confusion_matrix"]).shape == (10, 10)
    assert np.asarray(model["confusion_matrix"]).sum() == accuracy["images"] == model["count"]
    report = tmp_path / "report"
    for name in ("profile.json", "report.md", "report.html", "latency_cpu-1t.png", "confusion_model.png",
                 "confusion_parent.png"):
        assert (report / name).stat().st_size > 0, name
    assert "top-1 agreement" in (report / "report.md").read_text()
    assert "paired 95% interval" in (report / "report.md").read_text()
    assert json.loads((report / "profile.json").read_text())["accuracy"]["accuracy_drop"] == accuracy["accuracy_drop"]


def test_profile_reads_the_model_once_to_find_its_labels(digits_pair, tmp_path, opens_of):
    """Two reads each: the manifest's sha256 check (a bare .tflite: its embedded metadata), then the format check."""
    from edgekit.profiling import _profiled_artifact
    from edgekit.targets.tflite_converter import embed_metadata

    _, child = digits_pair
    with opens_of(child.path) as opens:
        artifact, fmt = _profiled_artifact(child.directory, labelled=True)
    assert opens() == 2 and fmt == "tflite" and artifact.manifest.labels == child.manifest.labels
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(embed_metadata(child.path.read_bytes(), labels=child.manifest.labels,
                                    preprocessing=child.manifest.preprocessing))
    with opens_of(bare) as opens:
        artifact, fmt = _profiled_artifact(bare, labelled=True)
    assert opens() == 2 and artifact.manifest.labels == child.manifest.labels
    assert artifact.manifest.preprocessing == child.manifest.preprocessing


def test_accuracy_report_says_when_the_parent_is_missing(digits_pair, digits_dir, tmp_path):
    from edgekit.profiling import profile

    _, child = digits_pair
    orphan = tmp_path / "orphan"
    shutil.copytree(child.directory, orphan)
    manifest = json.loads((orphan / "manifest.json").read_text())
    manifest["parent"]["path"] = "../gone/model.keras"
    (orphan / "manifest.json").write_text(json.dumps(manifest))
    result = profile(model=orphan, devices=("cpu-1t",), data=digits_dir / "test", runs=2, warmup=0)
    assert result["accuracy"]["parent"] is None
    assert "missing" in result["accuracy"]["parent_missing"]
    assert result["accuracy"]["model"]["accuracy"] > 0


def test_accuracy_gate_on_the_digits_pair_passes_and_fails(digits_pair, digits_dir):
    from edgekit.profiling import profile
    from edgekit.gates import enforce_gates

    _, child = digits_pair
    result = profile(model=child.directory, devices=("cpu-1t",), data=digits_dir / "test", runs=2, warmup=0,
                     fail_if=("accuracy_drop>50", "top1_agreement<0"))
    enforce_gates(result)  # a loose gate passes
    result = profile(model=child.directory, devices=("cpu-1t",), data=digits_dir / "test", runs=2, warmup=0,
                     fail_if=("accuracy<1.01",))
    with pytest.raises(GateFailedError, match=r"accuracy<1.01: 0\.\d+"):
        enforce_gates(result)


# --- gates ----------------------------------------------------------------------------------------------------


def test_latency_gates_pass_and_fail_naming_metric_value_and_limit(tiny_models):
    from edgekit.profiling import profile
    from edgekit.gates import enforce_gates

    result = profile(model=tiny_models["int8.tflite"], devices=("cpu-1t",), runs=5, warmup=1,
                     fail_if=("p50_ms>1000", "memory_mib>=10000"))
    assert [row["failed"] for row in result["gates"]] == [False, False]
    enforce_gates(result)
    result = profile(model=tiny_models["int8.tflite"], devices=("cpu-1t",), runs=5, warmup=1,
                     fail_if=("p50_ms>0.000001",))
    with pytest.raises(GateFailedError) as info:
        enforce_gates(result)
    assert "p50_ms>1e-06 on cpu-1t:" in info.value.message and " ms" in info.value.message
    assert info.value.exit_code == 8


@pytest.mark.parametrize("expression", ["p50_ms >> 3", "p50_ms>abc", "__import__('os').system('x')>1", "p50>3",
                                        "p50_ms>inf", "", "accuracy_drop>1; p50_ms>2"])
def test_bad_gate_expression_is_a_usage_error(expression):
    from edgekit.gates import parse_gate

    with pytest.raises(UsageError, match="--fail-if"):
        parse_gate(expression)


def test_gate_expressions_parse_with_spaces_and_exponents():
    from edgekit.gates import parse_gate

    gate = parse_gate(" p99_ms <= 2.5e1 ")
    assert (gate.metric, gate.op, gate.limit) == ("p99_ms", "<=", 25.0)
    assert parse_gate("accuracy_drop>1").needs_accuracy


def test_accuracy_gate_without_data_fails_before_any_work(tiny_models):
    from edgekit.profiling import profile

    with pytest.raises(UsageError, match="--data"):
        profile(model=tiny_models["int8.tflite"], fail_if=("accuracy_drop>1",))


# --- devices --------------------------------------------------------------------------------------------------


def test_unknown_device_suggests_the_closest_name(tiny_models):
    from edgekit.profiling import profile

    with pytest.raises(UsageError, match=r"unknown device 'cpu-1': did you mean 'cpu-1t'"):
        profile(model=tiny_models["int8.tflite"], devices=("cpu-1",))


def test_unavailable_gpu_and_edgetpu_are_refused_with_the_reason_before_any_work(tiny_models):
    from edgekit.devices import get_device
    from edgekit.profiling import profile

    if get_device("gpu").available("tflite")[0]:
        pytest.skip("this machine has a usable GPU")
    started = time.perf_counter()
    with pytest.raises(DeviceUnavailableError, match=r"gpu: .*(Vulkan|GPU).*edgetpu: .*libedgetpu") as info:
        profile(model=tiny_models["int8.tflite"], devices=("gpu", "edgetpu"))
    assert time.perf_counter() - started < 5
    assert "edgekit devices" in info.value.fix


def test_multi_device_run_skips_the_unavailable_ones_and_profiles_the_rest(tiny_models):
    from edgekit.profiling import profile

    result = profile(model=tiny_models["float.onnx"], devices=("cpu-1t", "gpu", "edgetpu"), runs=3, warmup=0)
    devices = result["devices"]
    assert devices["cpu-1t"]["status"] == "ok"
    assert devices["edgetpu"] == {"status": "skipped", "reason": devices["edgetpu"]["reason"]}
    assert "libedgetpu" in devices["edgetpu"]["reason"] or "ONNX" in devices["edgetpu"]["reason"]
    from edgekit.devices import get_device

    gpu_ok, gpu_reason = get_device("gpu").available("onnx")
    if gpu_ok:  # a GPU machine with onnxruntime-gpu: the row is a real measurement on the GPU
        row = devices["gpu"]
        assert row["status"] == "ok", row
        assert row["accelerator"] == "gpu" and row["latency"]["count"] == 3 and row["latency"]["p50_ms"] > 0
    else:
        assert devices["gpu"] == {"status": "skipped", "reason": devices["gpu"]["reason"]}
        assert "CUDA" in devices["gpu"]["reason"] or "TensorRT" in devices["gpu"]["reason"], gpu_reason


# --- CLI ------------------------------------------------------------------------------------------------------


def test_profile_cli_prints_json_writes_the_report_and_exits_8_on_a_failed_gate(tiny_models, tmp_path, capsys):
    from edgekit.cli.entry import main

    with pytest.raises(SystemExit) as info:
        main(["profile", str(tiny_models["int8.tflite"]), "--device", "cpu-1t", "--device", "gpu", "--runs", "4",
              "--warmup", "0", "--json", "--report", str(tmp_path / "r"), "--fail-if", "p50_ms<100000"])
    captured = capsys.readouterr()
    assert info.value.code == 8
    assert "gate failed: p50_ms<100000 on cpu-1t: " in captured.err
    data = json.loads(captured.out)
    assert data["devices"]["cpu-1t"]["latency"]["count"] == 4
    assert (tmp_path / "r" / "report.html").read_text().count("<table>") >= 2


def test_profile_cli_bad_gate_exits_2_before_work(tiny_models, capsys):
    from edgekit.cli.entry import main

    with pytest.raises(SystemExit) as info:
        main(["profile", str(tiny_models["int8.tflite"]), "--fail-if", "p50_ms=>3"])
    assert info.value.code == 2
    assert "--fail-if" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["float.tflite", "int8.tflite", "float.onnx"])
def test_standalone_runner_and_runtime_core_read_and_run_the_model_alike(tiny_models, name):
    """runtime/runner.py is copied to devices and imports nothing from edgekit, so it keeps its own
    runtime session and flatbuffer reader: on the same real model they must agree with the core's."""
    from ai_edge_litert import interpreter as litert

    from edgekit.runtime import runner
    from edgekit.runtime.backends import ORT_DTYPES, open_backend, tflite_io_specs
    from edgekit.runtime.safety import read_tflite
    from edgekit.runtime.tflite_file import numpy_dtype

    assert {k: np.dtype(v) for k, v in runner.ORT_DTYPES.items()} == {k: np.dtype(v) for k, v in ORT_DTYPES.items()}
    path = tiny_models[name]
    fmt = path.suffix[1:]
    bare = "onnxruntime" if fmt == "onnx" else "ai_edge_litert"
    backend_name, module = runner._import_runtime(bare, fmt)
    session = runner._Session(backend_name, module, str(path), 1, "cpu")
    core = open_backend(path, fmt, threads=1, accelerator="cpu")
    assert session.inputs.shape == core.input.shape and session.inputs.dtype == core.input.dtype
    assert np.array_equal(np.asarray(session.run(session.inputs)), core.run(session.inputs))
    if fmt == "tflite":
        detail = litert.Interpreter(model_path=str(path)).get_input_details()[0]
        from_file, _ = tflite_io_specs(path.read_bytes())
        assert (from_file.scale, from_file.zero_point) == pytest.approx(detail["quantization"])
        assert from_file.dtype == detail["dtype"] and from_file.shape == tuple(detail["shape"])
        assert (from_file.scale > 0) == (name == "int8.tflite")
        tensors = read_tflite(path).main.tensors
        expected = sum(int(np.prod([max(d, 1) for d in t.shape])) * numpy_dtype(t.dtype).itemsize
                       for t in tensors if not t.is_constant)
        assert session.activation_bytes == expected > 0
