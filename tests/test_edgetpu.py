"""Edge TPU target: the static report on real converted models, and compile_edgetpu around the compiler.

Models are real tf_keras graphs converted by the real TFLite converter, once per module. The
compiler itself cannot be installed here, so the compile tests point ``EDGETPU_COMPILER`` at a
script that replays output recorded from real compiler runs (tests/data/edgetpu_compiler).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from edgekit.artifacts import MANIFEST_NAME, TEMP_PREFIX, sha256_file
from edgekit.errors import ConversionError, DeviceUnavailableError, ModelFileError, ValidationError
from edgekit.targets import edgetpu
from edgekit.targets.edgetpu import compatibility_report, compile_edgetpu, parse_compiler_log
from edgekit.runtime.safety import read_tflite

DATA = Path(__file__).parent / "data" / "edgetpu_compiler"


def _convert(model, mode: str, workdir: Path) -> bytes:
    """Convert through a SavedModel (the fast path): float, dynamic-range or full int8 (int8 I/O)."""
    from edgekit._tf import import_tf

    tf, _ = import_tf()
    saved = workdir / f"saved_{mode}_{model.name}"
    tf.saved_model.save(model, str(saved))
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if mode in ("int8", "dynamic-range"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        shape = [1, *model.input_shape[1:]]
        rng = np.random.default_rng(0)
        converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(4))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _tiny(batch: int | None, *, leaky: bool = False, name: str = "tiny"):
    """Conv -> (LeakyReLU) -> Conv -> pool -> Dense: small enough to convert in about a second."""
    from edgekit._tf import import_tf

    _, keras = import_tf()
    inp = keras.Input((16, 16, 3), batch_size=batch)
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    if leaky:
        x = keras.layers.LeakyReLU(0.1)(x)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)  # 2,304 weights: enough for dynamic-range to quantize
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x), name=name)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from edgekit._tf import import_tf

    _, keras = import_tf()
    folder = tmp_path_factory.mktemp("edgetpu_models")
    inp = keras.Input((96, 96, 3), batch_size=1)
    base = keras.applications.MobileNetV2(input_tensor=inp, alpha=0.35, weights=None, include_top=False)
    head = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(base.output))
    mobilenet = keras.Model(inp, head, name="mnv2")
    tiny = _tiny(1)
    specs = {"mobilenet_v2_int8": (mobilenet, "int8"), "float": (tiny, "float"),
             "dynamic_range": (tiny, "dynamic-range"), "dynamic_batch_int8": (_tiny(None, name="dynbatch"), "int8"),
             "leaky_relu_int8": (_tiny(1, leaky=True, name="leaky"), "int8")}
    paths = {}
    for key, (model, mode) in specs.items():
        paths[key] = folder / f"{key}.tflite"
        paths[key].write_bytes(_convert(model, mode, folder))
    return paths


def test_int8_mobilenet_v2_maps_every_op_to_the_edge_tpu(models):
    report = compatibility_report(models["mobilenet_v2_int8"])

    assert report.fully_int8 and report.fully_mapped
    assert report.cut_index is None and report.issues == [] and report.compiler_would_reject == []
    assert report.edgetpu_ops == len(report.ops) > 60 and report.cpu_ops == 0
    assert {v.op for v in report.ops} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}
    assert 0 < report.parameter_bytes == report.on_chip_bytes < report.size_bytes and report.off_chip_bytes == 0
    lines = report.summary_lines()
    assert f"Number of operations that will run on Edge TPU: {len(report.ops)}" in lines
    assert "Number of operations that will run on CPU: 0" in lines
    assert any(line.startswith("CONV_2D") and line.split()[1] == "35" and line.endswith("Mapped to Edge TPU")
               for line in lines)
    json.dumps(report.to_dict())  # serialisable as the deliverable JSON


def test_float_model_runs_entirely_on_cpu_because_of_its_data_type(models):
    report = compatibility_report(models["float"])

    assert not report.fully_int8 and report.cut_index == 0 and report.edgetpu_ops == 0
    assert {v.status for v in report.ops} == {edgetpu.BAD_DTYPE}
    assert "FLOAT32" in report.ops[0].reasons[0]
    assert report.issues == ["not quantized: FLOAT32 activations"]


def test_dynamic_range_model_is_named_as_such(models):
    report = compatibility_report(models["dynamic_range"])

    assert not report.fully_int8 and report.edgetpu_ops == 0
    assert report.issues[0].startswith("dynamic-range model: int8 weights but FLOAT32 activations")


def test_dynamic_batch_is_reported_even_when_fully_int8(models):
    graph = read_tflite(models["dynamic_batch_int8"])
    assert graph.main.tensors[graph.main.inputs[0]].shape_signature[0] == -1

    report = compatibility_report(models["dynamic_batch_int8"])
    assert report.fully_int8 and report.cut_index == 0 and report.edgetpu_ops == 0
    assert report.ops[0].status == edgetpu.DYNAMIC
    assert "shape_signature [-1, 16, 16, 3]" in report.ops[0].reasons[0]
    assert any(issue.startswith("dynamic shapes") for issue in report.issues)


def test_unsupported_op_cuts_the_graph_and_everything_after_runs_on_cpu(models):
    report = compatibility_report(models["leaky_relu_int8"])
    names = [v.op for v in report.ops]
    cut = names.index("LEAKY_RELU")

    assert report.fully_int8 and report.cut_index == cut > 0
    assert all(v.mapped for v in report.ops[:cut])
    assert report.ops[cut].status == edgetpu.NOT_SUPPORTED
    assert all(v.status == edgetpu.AFTER_CUT and not v.mapped for v in report.ops[cut + 1:])
    assert report.cpu_ops == len(names) - cut
    assert "operations the Edge TPU does not support: LEAKY_RELU" in report.issues
    assert any(line.startswith(f"Partition: ops 0..{cut - 1} on the Edge TPU, CPU from op {cut} (LEAKY_RELU")
               for line in report.summary_lines())
    # Parameters of ops after the cut stay on the CPU, so they are not counted for the cache.
    assert report.parameter_bytes < compatibility_report(models["mobilenet_v2_int8"]).parameter_bytes


def test_graph_reader_describes_ops_tensors_and_quantization(models):
    graph = read_tflite(models["mobilenet_v2_int8"])
    sub = graph.main
    first = sub.operators[0]
    tensor_in = sub.tensors[sub.inputs[0]]

    assert len(graph.subgraphs) == 1 and "min_runtime_version" in graph.metadata
    assert (first.op, first.version, first.fused_activation) == ("CONV_2D", 3, "RELU6")
    assert tensor_in.dtype == "INT8" and tensor_in.shape == (1, 96, 96, 3) and not tensor_in.is_constant
    assert len(tensor_in.scale) == 1 and tensor_in.scale[0] > 0
    weights = sub.tensors[first.inputs[1]]
    assert weights.is_constant and weights.dtype == "INT8" and len(weights.scale) == weights.shape[0]
    mean = next(op for op in sub.operators if op.op == "MEAN")
    assert sub.tensors[mean.inputs[1]].int_values == (1, 2)


@pytest.mark.parametrize("damage", ["truncated", "garbage_with_identifier", "random", "empty"])
def test_damaged_files_raise_model_file_error_naming_the_file(models, tmp_path, damage):
    good = models["mobilenet_v2_int8"].read_bytes()
    data = {"truncated": good[: len(good) // 3], "garbage_with_identifier": b"\xff\xff\x00\x00TFL3" + os.urandom(64),
            "random": np.random.default_rng(1).bytes(4096), "empty": b""}[damage]
    bad = tmp_path / f"{damage}.tflite"
    bad.write_bytes(data)

    with pytest.raises(ModelFileError, match=damage):
        compatibility_report(bad)


def test_compile_without_compiler_writes_static_report_and_says_how_to_install(models, tmp_path, monkeypatch):
    monkeypatch.setenv(edgetpu.COMPILER_ENV, str(tmp_path / "no-such-compiler"))
    out = tmp_path / "out"

    with pytest.raises(DeviceUnavailableError) as info:
        compile_edgetpu(models["mobilenet_v2_int8"], out_dir=out)

    message = info.value.one_line()
    assert "not installed" in message and "edgetpu-compiler" in message and "static" in message
    saved = json.loads((out / edgetpu.REPORT_NAME).read_text())
    assert saved["fully_mapped"] and saved["cpu_ops"] == 0 and saved["source"] == "static"


def test_compile_refuses_a_model_that_is_not_fully_int8(models, tmp_path):
    with pytest.raises(ValidationError) as info:
        compile_edgetpu(models["dynamic_range"], out_dir=tmp_path / "out")

    assert "edgekit compress --int8" in info.value.fix and "dynamic-range" in info.value.message
    assert not (tmp_path / "out").exists()


def test_parse_compiler_log_reads_recorded_stdout_and_operation_log():
    stdout = parse_compiler_log((DATA / "issue393_v15_stdout.txt").read_text())
    assert stdout == {"compiler_version": "15.0.340273435", "on_chip_bytes": round(3.21 * 2**20),
                      "on_chip_remaining_bytes": round(3.78 * 2**20), "off_chip_bytes": 0,
                      "edgetpu_subgraphs": 1, "total_ops": 165, "edgetpu_ops": 117, "cpu_ops": 48,
                      "compile_ms": 2644}

    log = parse_compiler_log((DATA / "tiny_yolo_v14_edgetpu.log").read_text())
    assert log["compiler_version"] == "14.1.317412892" and len(log["operators"]) == 8
    assert log["operators"][2] == {"operator": "RESIZE_NEAREST_NEIGHBOR", "count": 1,
                                   "status": "Operation version not supported"}
    assert (log["edgetpu_ops"], log["cpu_ops"]) == (6 + 11 + 2, 1 + 1 + 2 + 1 + 1)


def _recorded_compiler(tmp_path: Path, stdout_file: str, *, exit_code: int = 0, log_file: str | None = None) -> Path:
    """A script that replays a real compiler run's recorded output (argv: -s -o OUT MODEL)."""
    script = tmp_path / "recorded_edgetpu_compiler"
    copy_log = f'cp "{DATA / log_file}" "$3/${{name}}_edgetpu.log"\n' if log_file else ""
    write_model = 'cp "$4" "$3/${name}_edgetpu.tflite"\n' if exit_code == 0 else ""
    script.write_text(f'#!/bin/sh\nname=$(basename "$4" .tflite)\n{write_model}{copy_log}'
                      f'cat "{DATA / stdout_file}"\nexit {exit_code}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_compile_with_compiler_records_its_log_in_the_manifest(models, tmp_path, monkeypatch):
    script = _recorded_compiler(tmp_path, "issue393_v15_stdout.txt", log_file="tiny_yolo_v14_edgetpu.log")
    monkeypatch.setenv(edgetpu.COMPILER_ENV, str(script))
    model = models["mobilenet_v2_int8"]
    out = tmp_path / "compiled"

    artifact = compile_edgetpu(model, out_dir=out)

    assert artifact.path == out / "mobilenet_v2_int8_edgetpu.tflite" and artifact.path.is_file()
    saved = json.loads((out / MANIFEST_NAME).read_text())
    assert saved["format"] == "edgetpu-tflite" and saved["sha256"] == sha256_file(artifact.path)
    assert saved["parent"]["sha256"] == sha256_file(model)
    assert saved["metrics"] == {"edgetpu_ops": 117, "cpu_ops": 48, "edgetpu_subgraphs": 1,
                                "on_chip_bytes": round(3.21 * 2**20), "off_chip_bytes": 0}
    assert saved["versions"]["edgetpu_compiler"] == "15.0.340273435"
    assert len(saved["extra"]["edgetpu_compiler"]["operators"]) == 8
    assert saved["extra"]["static_report"]["cpu_ops"] == 0
    assert (out / "mobilenet_v2_int8_edgetpu.log").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_compiler_refusing_the_model_becomes_conversion_error_and_leaves_nothing(models, tmp_path, monkeypatch):
    script = _recorded_compiler(tmp_path, "issue879_v16_parse_failure.txt", exit_code=1)
    monkeypatch.setenv(edgetpu.COMPILER_ENV, str(script))
    out = tmp_path / "compiled"

    with pytest.raises(ConversionError, match="Model could not be parsed"):
        compile_edgetpu(models["mobilenet_v2_int8"], out_dir=out)

    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# One small synthetic model per rule of the static report (built here, converted by the real converter)

def _rule_model(name: str, shape: tuple[int, ...], body):
    """A batch-1 tf_keras model ``body(input)`` named after the rule it exercises."""
    from edgekit._tf import import_tf

    _, keras = import_tf()
    inp = keras.Input(shape, batch_size=1)
    return keras.Model(inp, body(keras, inp), name=name)


def _lambda(keras, fn):
    return keras.layers.Lambda(fn)


def _rule_specs():
    """name -> (input shape, body). Each body exercises one rule of edgetpu.SUPPORTED_OPS or the model rules."""
    import tensorflow as tf

    conv = lambda k, dilation=(1, 1): k.layers.Conv2D(8, 3, padding="same", dilation_rate=dilation)  # noqa: E731
    return {
        "dilation_equal": ((12, 12, 3), lambda k, x: conv(k, (2, 2))(x)),
        "dilation_unequal": ((12, 12, 3), lambda k, x: conv(k, (1, 2))(x)),
        "mean_z_by_8": ((6, 6, 8), lambda k, x: _lambda(k, lambda t: tf.reduce_mean(t, -1, keepdims=True))(conv(k)(x))),
        "mean_z_by_6": ((6, 6, 3), lambda k, x: _lambda(k, lambda t: tf.reduce_mean(t, -1, keepdims=True))(
            k.layers.Conv2D(6, 3, padding="same")(x))),
        "fc_1d": ((8,), lambda k, x: k.layers.Dense(4)(x)),
        "fc_2d_output": ((4, 8), lambda k, x: k.layers.Dense(4)(x)),
        "softmax_1d": ((8,), lambda k, x: k.layers.Softmax()(k.layers.Dense(4)(x))),
        "softmax_spatial": ((4, 4, 3), lambda k, x: k.layers.Softmax()(conv(k)(x))),
        "slice_stride_1": ((8, 8, 3), lambda k, x: _lambda(k, lambda t: t[:, 1:7, 1:7, :])(conv(k)(x))),
        "slice_stride_2": ((8, 8, 3), lambda k, x: _lambda(k, lambda t: t[:, ::2, ::2, :])(conv(k)(x))),
        "resize_2x": ((4, 4, 3), lambda k, x: k.layers.UpSampling2D(2, interpolation="bilinear")(conv(k)(x))),
        "resize_1px_align_corners": ((4, 4, 3), lambda k, x: _lambda(
            k, lambda t: tf.compat.v1.image.resize_bilinear(t, (5, 5), align_corners=True))(
                k.layers.GlobalAveragePooling2D(keepdims=True)(conv(k)(x)))),
        "resize_fractional": ((4, 4, 3), lambda k, x: _lambda(
            k, lambda t: tf.compat.v1.image.resize_bilinear(t, (6, 6)))(conv(k)(x))),
        "rank_5d": ((4, 4, 8), lambda k, x: k.layers.Reshape((4, 4, 4, 2))(conv(k)(x))),
        "prelu_shared": ((6, 6, 3), lambda k, x: k.layers.PReLU(shared_axes=[1, 2])(conv(k)(x))),
        "prelu_per_pixel": ((6, 6, 3), lambda k, x: k.layers.PReLU()(conv(k)(x))),
        "lstm": ((6, 5), lambda k, x: k.layers.Dense(3)(k.layers.LSTM(4)(x))),
    }


@pytest.fixture(scope="module")
def rule_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("edgetpu_rules")
    paths = {}
    for name, (shape, body) in _rule_specs().items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(_convert(_rule_model(name, shape, body), "int8", folder))
    return paths


def _verdicts(report, op: str):
    return [v for v in report.ops if v.op == op]


# (model, op, expected status): a rule's model that breaks it, and where it matters, one that keeps it.
RULE_CASES = [
    ("dilation_equal", "CONV_2D", edgetpu.MAPPED),
    ("dilation_unequal", "CONV_2D", edgetpu.LIMITATION),
    ("mean_z_by_8", "MEAN", edgetpu.MAPPED),
    ("mean_z_by_6", "MEAN", edgetpu.LIMITATION),
    ("fc_1d", "FULLY_CONNECTED", edgetpu.MAPPED),
    ("fc_2d_output", "FULLY_CONNECTED", edgetpu.LIMITATION),
    ("softmax_1d", "SOFTMAX", edgetpu.MAPPED),
    ("softmax_spatial", "SOFTMAX", edgetpu.LIMITATION),
    ("slice_stride_1", "STRIDED_SLICE", edgetpu.MAPPED),
    ("slice_stride_2", "STRIDED_SLICE", edgetpu.LIMITATION),
    ("resize_2x", "RESIZE_BILINEAR", edgetpu.MAPPED),
    ("resize_1px_align_corners", "RESIZE_BILINEAR", edgetpu.LIMITATION),
    ("resize_fractional", "RESIZE_BILINEAR", edgetpu.LIMITATION),
    ("rank_5d", "RESHAPE", edgetpu.BAD_RANK),
    ("prelu_shared", "PRELU", edgetpu.MAPPED),
    ("prelu_per_pixel", "PRELU", edgetpu.LIMITATION),
    ("lstm", "UNIDIRECTIONAL_SEQUENCE_LSTM", edgetpu.MAPPED),
]


@pytest.mark.slow  # converts 17 models: about a minute on 2 shared cores
@pytest.mark.parametrize(("name", "op", "status"), RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_each_documented_rule_on_its_own_synthetic_model(rule_models, name, op, status):
    report = compatibility_report(rule_models[name])
    judged = _verdicts(report, op)

    assert judged, f"the converter produced no {op} in {name}: {[v.op for v in report.ops]}"
    assert judged[0].status == status, judged[0].reasons
    if status == edgetpu.MAPPED:
        assert report.fully_mapped and report.cpu_ops == 0
    else:
        assert report.cut_index == judged[0].index and judged[0].reasons
        assert all(v.status == edgetpu.AFTER_CUT for v in report.ops[judged[0].index + 1:] if v.op != "DEQUANTIZE")


def _patched(source: Path, out: Path, change) -> Path:
    """``source`` with its flatbuffer edited by ``change(model, schema)``: what a converter we lack would write."""
    import ai_edge_litert.schema_py_generated as schema
    import flatbuffers

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(source.read_bytes(), 0))
    change(model, schema)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return out


@pytest.mark.slow
def test_custom_op_runs_on_the_cpu_under_its_custom_code(rule_models, tmp_path):
    def make_last_op_custom(model, schema):
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode, code.version = "MyDecoderOp", 1
        model.operatorCodes.append(code)
        last = model.subgraphs[0].operators[-1]  # the SOFTMAX after the FULLY_CONNECTED
        last.opcodeIndex = len(model.operatorCodes) - 1
        last.builtinOptionsType, last.builtinOptions, last.customOptions = 0, None, []

    report = compatibility_report(_patched(rule_models["softmax_1d"], tmp_path / "custom.tflite", make_last_op_custom))
    custom = [v for v in report.ops if v.custom_code == "MyDecoderOp"]

    assert custom and custom[0].status == edgetpu.NOT_SUPPORTED and report.cut_index == custom[0].index == 1
    assert report.ops[0].op == "FULLY_CONNECTED" and report.ops[0].mapped
    assert "custom op 'MyDecoderOp'" in custom[0].reasons[0]


@pytest.mark.slow
def test_op_version_newer_than_compiler_16_is_a_parse_failure(rule_models, tmp_path):
    def bump_conv_version(model, schema):
        for code in model.operatorCodes:
            if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.CONV_2D:
                code.version = 6

    report = compatibility_report(_patched(rule_models["dilation_equal"], tmp_path / "v6.tflite", bump_conv_version))

    assert report.ops[0].status == edgetpu.BAD_VERSION and report.compiler_would_reject == ["CONV_2D version 6"]
    assert not report.fully_mapped


def test_float_io_conversions_at_the_edges_do_not_cut_the_graph(tmp_path):
    """edgekit's own int8 output keeps float I/O: QUANTIZE in, DEQUANTIZE out run on the CPU at the edges."""
    from edgekit._tf import import_tf

    tf, keras = import_tf()
    model = _rule_model("float_io", (8,), lambda k, x: k.layers.Dense(4)(k.layers.Dense(8, activation="relu")(x)))
    saved = tmp_path / "saved"
    tf.saved_model.save(model, str(saved))
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.random.default_rng(0).random((1, 8), dtype=np.float32)]
                                                 for _ in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path = tmp_path / "float_io.tflite"
    path.write_bytes(converter.convert())

    report = compatibility_report(path)
    names = [v.op for v in report.ops]

    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE" and report.fully_int8
    assert report.cut_index is None and names.count("FULLY_CONNECTED") == 2
    assert all(v.mapped for v in report.ops if v.op == "FULLY_CONNECTED")


# ---------------------------------------------------------------------------------------------
# Against the real compiler: google-coral/test_data models and their edgetpu_compiler 16 outputs

COMPILED_MODELS = ["mobilenet_v1_0.25_128_quant", "split_concat", "keras_lstm_mnist_ptq", "deeplabv3_mnv2_pascal_quant",
                   "posenet_mobilenet_v1_075_481_641_16_quant_decoder",
                   "bodypix_mobilenet_v1_075_512_512_16_quant_decoder"]


@pytest.mark.parametrize("name", COMPILED_MODELS)
def test_static_report_leaves_on_the_cpu_what_the_real_compiler_left(edgetpu_compiled_dir, name):
    source, compiled = edgetpu_compiled_dir / f"{name}.tflite", edgetpu_compiled_dir / f"{name}_edgetpu.tflite"

    result = edgetpu.agreement_with_compiler(source, compiled)

    assert result["cpu_ops"]["report"] == result["cpu_ops"]["compiler"]  # op types, counts and order
    assert result["cut"]["report"] == result["cut"]["compiler"]
    assert result["agrees"]


def test_compiled_file_reader_finds_the_ops_the_compiler_left_on_the_cpu(edgetpu_compiled_dir):
    """The ground truth side of the comparison, read from deeplabv3's compiled file (see its README)."""
    name = "deeplabv3_mnv2_pascal_quant"
    cpu, cut = edgetpu.compiled_cpu_ops(edgetpu_compiled_dir / f"{name}.tflite",
                                        edgetpu_compiled_dir / f"{name}_edgetpu.tflite")

    assert cpu == ["RESIZE_BILINEAR", "QUANTIZE", "CONCATENATION", "CONV_2D", "CONV_2D", "RESIZE_BILINEAR",
                   "RESIZE_BILINEAR", "ARG_MAX"]
    source_ops = read_tflite(edgetpu_compiled_dir / f"{name}.tflite").main.operators
    assert cut == 64 and source_ops[cut].op == "RESIZE_BILINEAR"
