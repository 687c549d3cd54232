"""The on-device runtime against real models: a tiny tf_keras CNN trained on the digits, converted with the
real TFLite converter (float and full int8) and tf2onnx, then predicted with LiteRT/onnxruntime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.artifacts import Manifest, Preprocessing, write_artifact
from edgekit.errors import DeviceUnavailableError, ManifestError
from edgekit.runtime import (Predictor, accelerator_available, embed_onnx_metadata, embed_tflite_metadata,
                             make_metadata, read_onnx_metadata, read_tflite_metadata)

SIZE = 32
PRE = Preprocessing(size=(SIZE, SIZE), mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5))
LABELS = [f"digit-{i}" for i in range(10)]


def build_tiny_models(base: Path, digits: Path) -> dict[str, Path]:
    """Train a tiny CNN on the digits and write float/int8 .tflite and .onnx artifacts (once per base folder)."""
    from edgekit.data import load_image, normalize, scan_image_folder

    paths = {"float": base / "float" / "model.tflite", "int8": base / "int8" / "model.tflite",
             "onnx": base / "onnx" / "model.onnx", "bare": base / "bare" / "model.tflite",
             "keras_probs": base / "keras_probs.npy", "test_images": base / "test_images.json"}
    if (base / ".complete").is_file():
        return paths
    from edgekit._tf import import_tf

    base.mkdir(parents=True, exist_ok=True)
    tf, keras = import_tf()
    keras.utils.set_random_seed(0)
    train = scan_image_folder(digits / "train")
    x = normalize(np.stack([load_image(p, PRE.size) for p in train.paths]), PRE)
    y = train.labels
    inputs = keras.Input((SIZE, SIZE, 3), batch_size=1)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    # Train with a batch-free twin sharing the layers (the exported graph keeps batch 1).
    trainer = keras.Model(*_rebatched(keras, model))
    trainer.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    trainer.fit(x, y, epochs=15, batch_size=32, verbose=0)

    test = scan_image_folder(digits / "test")
    test_paths = test.paths[::9][:40]
    x_test = normalize(np.stack([load_image(p, PRE.size) for p in test_paths]), PRE)
    np.save(paths["keras_probs"], trainer.predict(x_test, verbose=0))
    paths["test_images"].write_text(json.dumps([str(p) for p in test_paths]))

    saved = base / "saved_model"
    tf.saved_model.save(model, str(saved))
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    float_bytes = converter.convert()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(0, 400, 4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    int8_bytes = converter.convert()

    import onnx
    import tf2onnx

    spec = (tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    meta = make_metadata(LABELS, PRE.to_dict())
    embed_onnx_metadata(proto, meta)
    paths["onnx"].parent.mkdir(parents=True)
    onnx.save(proto, str(paths["onnx"]))

    def manifest(fmt: str) -> Manifest:
        return Manifest(format=fmt, artifact="model.tflite", stage="test", labels=LABELS, preprocessing=PRE.to_dict())

    write_artifact(base / "float", "model.tflite", manifest("tflite"),
                   writer=lambda tmp: tmp.write_bytes(embed_tflite_metadata(float_bytes, meta)))
    write_artifact(base / "int8", "model.tflite", manifest("tflite"), writer=lambda tmp: tmp.write_bytes(int8_bytes))
    paths["bare"].parent.mkdir(parents=True)
    paths["bare"].write_bytes(float_bytes)
    (base / ".complete").write_text("ok\n")
    return paths


def _rebatched(keras, model):
    inputs = keras.Input((SIZE, SIZE, 3))
    h = inputs
    for layer in model.layers[1:]:
        h = layer(h)
    return inputs, h


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits_dir) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "runtime-models", digits_dir)


@pytest.fixture(scope="session")
def test_images(tiny_models) -> list[Path]:
    return [Path(p) for p in json.loads(tiny_models["test_images"].read_text())]


def test_float_tflite_matches_keras_within_1e4_and_reads_embedded_metadata(tiny_models, test_images):
    predictor = Predictor(tiny_models["float"])
    assert predictor.backend == "ai_edge_litert"
    assert predictor.labels == LABELS and predictor.input_dtype == np.float32
    probs = np.concatenate([predictor.run_raw(predictor.preprocess(p)) for p in test_images])
    np.testing.assert_allclose(probs, np.load(tiny_models["keras_probs"]), atol=1e-4)


def test_int8_tflite_quantizes_input_dequantizes_output_and_agrees_on_top1(tiny_models, test_images):
    predictor = Predictor(tiny_models["int8"])  # labels/preprocessing from manifest.json only
    assert predictor.input_dtype == np.int8
    assert read_tflite_metadata(tiny_models["int8"].read_bytes()) is None
    batch = predictor.preprocess(test_images[0])
    assert batch.dtype == np.int8 and batch.shape == (1, SIZE, SIZE, 3)
    probs = np.concatenate([predictor.run_raw(predictor.preprocess(p)) for p in test_images])
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1.0, atol=0.05)
    keras_top1 = np.load(tiny_models["keras_probs"]).argmax(axis=1)
    assert np.mean(probs.argmax(axis=1) == keras_top1) >= 0.8


def _true_label(image: Path) -> str:
    return f"digit-{image.parent.name}"


def test_runtime_predictions_name_the_right_digit(tiny_models, test_images):
    """The product, not the fixture: the runtime's top-1 labels against the true labels of held-out digits."""
    for key in ("float", "int8", "onnx"):
        predictor = Predictor(tiny_models[key])
        correct = [predictor.predict(p, top_k=1)[0][0] == _true_label(p) for p in test_images]
        # Measured on these 40 images (two fixture builds): float 25/40, int8 26/40, onnx 25/40; chance is 4/40.
        assert np.mean(correct) >= 0.5, (key, np.mean(correct))


def test_onnx_matches_keras_and_takes_labels_from_metadata_props(tiny_models, test_images):
    predictor = Predictor(tiny_models["onnx"])
    assert predictor.backend == "onnxruntime" and predictor.labels == LABELS
    probs = np.concatenate([predictor.run_raw(predictor.preprocess(p)) for p in test_images])
    np.testing.assert_allclose(probs, np.load(tiny_models["keras_probs"]), atol=1e-4)


def _execution_plan(predictor: Predictor) -> list[str]:
    """The op names the interpreter will execute: a delegate that took over nodes shows up as DELEGATE."""
    return [node["op_name"] for node in predictor._backend.interpreter._get_ops_details()]


def test_cpu_reference_kernels_agree_with_xnnpack(tiny_models, test_images):
    fast = Predictor(tiny_models["float"], threads=2)
    reference = Predictor(tiny_models["float"], accelerator="cpu-reference")
    batch = np.concatenate([fast.preprocess(p) for p in test_images[:8]])
    np.testing.assert_allclose(reference.run_raw(batch), fast.run_raw(batch), atol=1e-5)
    # XNNPACK really is off for cpu-reference: no delegate node in its interpreter, while the default
    # cpu device's interpreter gained one (XNNPACK's, which took over the graph's nodes).
    assert "DELEGATE" not in _execution_plan(reference) and "CONV_2D" in _execution_plan(reference)
    assert "DELEGATE" in _execution_plan(fast)


def test_runtime_runs_edgekits_own_int8_output_alone(tiny_float_artifact, digits_dir, tmp_path):
    """What `edgekit compress --int8` ships (float I/O around int8, labels + normalization embedded), copied
    without its manifest, predicts through the runtime like the float parent."""
    from edgekit.data import scan_image_folder
    from edgekit.stages.compress import compress
    from edgekit.runtime.safety import read_tflite

    (artifact,) = compress(model=tiny_float_artifact.directory, out_dir=tmp_path / "compressed", int8=True,
                           calibration_samples=64)
    alone = tmp_path / "device" / "model.tflite"
    alone.parent.mkdir()
    alone.write_bytes(artifact.path.read_bytes())
    ops = [op.op for op in read_tflite(alone).main.operators]
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"  # float I/O, int8 inside

    predictor = Predictor(alone)
    assert predictor.backend == "ai_edge_litert" and predictor.input_dtype == np.float32
    assert predictor.labels == tiny_float_artifact.manifest.labels  # from the embedded metadata only
    test = scan_image_folder(digits_dir / "test")
    picks = list(range(0, len(test.paths), max(len(test.paths) // 60, 1)))[:60]
    predicted = [predictor.predict(test.paths[i], top_k=1)[0][0] for i in picks]
    accuracy = np.mean([label == test.classes[test.labels[i]] for label, i in zip(predicted, picks, strict=True)])
    assert accuracy >= 0.75, accuracy  # measured 0.90 (54/60) on these held-out digits; chance is 0.1


def test_litert_compiled_model_path_gives_interpreter_results(tiny_models, test_images):
    """The GPU code path (CompiledModel), exercised here on LiteRT's CPU accelerator."""
    from edgekit.runtime.backends import LiteRTCompiledBackend

    predictor = Predictor(tiny_models["int8"])
    compiled = LiteRTCompiledBackend(tiny_models["int8"], hardware="CPU")
    assert compiled.input == predictor._backend.input and compiled.output == predictor._backend.output
    batch = np.concatenate([predictor.preprocess(p) for p in test_images[:4]])
    np.testing.assert_array_equal(compiled.run(batch), predictor._backend.run(batch))


def test_gpu_gap_variants_run_on_the_cpu_accelerator_and_report_per_inference(tiny_models, tmp_path):
    """benchmarks/gpu_gap.py's variants (made for the GPU) run here on LiteRT's CPU accelerator, each in a pinned
    child process: every step is timed, a batch answers as single samples do, and the table's per-inference
    column divides a queued iteration by its inferences."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_gap", Path(__file__).parents[1] / "benchmarks" / "gpu_gap.py")
    gpu_gap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_gap)
    names = ("write+run+read", f"edgekit backend, batch of {gpu_gap.GROUP}", f"run x{gpu_gap.BATCH}+read")
    rows = {name: [gpu_gap.one_case(name, tiny_models["float"], "CPU", tmp_path)] for name in names}
    split = rows["write+run+read"][0]
    assert set(split["step_p50_ms"]) == {"write", "run", "read"} and all(v > 0 for v in split["step_p50_ms"].values())
    assert sum(split["step_p50_ms"].values()) == pytest.approx(split["p50_ms"], rel=0.5)
    batch = rows[names[1]][0]
    assert batch["inferences_per_iteration"] == gpu_gap.GROUP and batch["batch_vs_single_max_diff"] == 0.0
    assert split["buffer_requirements"]["input"]["supported_types"] == [1]  # host memory on the CPU accelerator
    lines = {line.split(" | ")[0][2:]: line.split(" | ") for line in gpu_gap.table({"variants": gpu_gap.summarize(rows)})
             .splitlines()[2:]}
    queued = rows[names[2]][0]
    assert float(lines[names[2]][2]) == pytest.approx(queued["p50_ms"] / gpu_gap.BATCH, abs=1e-3)
    assert float(lines[names[1]][2]) == pytest.approx(batch["p50_ms"] / gpu_gap.GROUP, abs=1e-3)


def test_compiled_model_path_prints_nothing_of_litert_s_own(tiny_models):
    """LiteRT's CompiledModel logs its environments being made (on the first run) and destroyed (with the model,
    and at exit), and its GPU accelerator prints ``INFO: Loaded OpenCL library with dlopen.`` on stdout (seen on
    an H200, before `predict --json`'s JSON). A fresh process: its output is exactly what it printed itself."""
    script = ("import numpy as np\n"
              "from edgekit.runtime.backends import LiteRTCompiledBackend\n"
              "def answer():  # the backend is released when this returns, as at the end of `edgekit predict`\n"
              f"    backend = LiteRTCompiledBackend({str(tiny_models['float'])!r}, hardware='CPU')\n"
              "    return backend.run(np.zeros((2, *backend.input.shape[1:]), np.float32)).shape\n"
              "print(answer())\n")
    env = {k: v for k, v in os.environ.items() if k != "EDGEKIT_DEBUG"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("(2, 10)\n", ""), (done.stdout, done.stderr[-600:])


def test_gpu_compile_failure_is_one_line_with_litert_s_logged_reason(tiny_models, capfd):
    """LiteRT raises only source locations (``ERROR: [./litert/cc/litert_compiled_model.h:1961]``) and logs the
    reason; the error names that reason, and LiteRT's teardown lines stay out of the terminal."""
    from edgekit.runtime.backends import LiteRTCompiledBackend

    try:
        LiteRTCompiledBackend(tiny_models["float"], hardware="GPU")
    except DeviceUnavailableError as exc:
        error, message = exc, exc.message
    else:
        pytest.skip("LiteRT found a GPU adapter here")
    assert message.startswith(f"LiteRT could not compile {tiny_models['float']} for the GPU: "), message
    assert "WebGPU" in message and ".cc:" not in message and ".h:" not in message, message
    assert "\n" not in error.one_line() and capfd.readouterr().err == ""


def test_profile_runner_passes_an_edgekit_error_on_with_its_one_fix(tiny_models):
    """The fresh measuring process meets edgekit's own DeviceUnavailableError: the parent raises it with its
    fix once, not wrapped in "the measurement failed ... (fix: ...) (fix: run with --debug ...)"."""
    from edgekit.runtime.latency import measure_local

    try:
        measure_local(tiny_models["float"], accelerator="gpu", threads=1, runs=1, warmup=0)
    except DeviceUnavailableError as exc:
        error = exc
    else:
        pytest.skip("the GPU ran the model here")
    assert error.one_line().count("(fix:") == 1 and "measurement failed" not in error.message, error.one_line()
    assert "Vulkan" in error.one_line() or "WebGPU" in error.one_line(), error.one_line()


def test_predict_batch_equals_one_by_one_and_is_sorted(tiny_models, test_images):
    predictor = Predictor(tiny_models["float"])
    batched = predictor.predict_batch(test_images[:5], top_k=3)
    assert batched == [predictor.predict(p, top_k=3) for p in test_images[:5]]
    for ranked in batched:
        scores = [s for _, s in ranked]
        assert len(ranked) == 3 and scores == sorted(scores, reverse=True)


def test_path_pil_array_and_odd_image_modes_give_the_same_prediction(tiny_models, test_images, tmp_path):
    predictor = Predictor(tiny_models["float"])
    path = test_images[0]
    rgb = Image.open(path).convert("RGB")
    expected = predictor.predict(path, top_k=1)[0]
    assert predictor.predict(rgb, top_k=1)[0] == pytest.approx(expected)
    assert predictor.predict(np.asarray(rgb), top_k=1)[0] == pytest.approx(expected)
    for mode in ("L", "RGBA", "P", "CMYK"):
        assert predictor.predict(rgb.convert(mode), top_k=1)[0][0] == expected[0], mode
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; EXIF says "rotate 90 degrees clockwise to view"
    rgb.transpose(Image.Transpose.ROTATE_90).save(rotated, exif=exif, quality=100)
    assert predictor.predict(rotated, top_k=1)[0][0] == expected[0]


def test_predict_folder_reports_unreadable_files_and_keeps_going(tiny_models, test_images, tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.open(test_images[0]).save(folder / "a.png")
    Image.open(test_images[1]).save(folder / "sub" / "b.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("ignored")
    results = Predictor(tiny_models["float"]).predict_folder(folder, top_k=2)
    assert [Path(r["path"]).name for r in results] == ["a.png", "broken.jpg", "b.png"]
    assert "broken.jpg" in results[1]["error"]
    assert len(results[0]["top_k"]) == 2 and results[0]["top_k"][0]["label"] in LABELS


def test_non_image_and_bad_array_inputs_raise_data_error_naming_the_file(tiny_models, tmp_path):
    from edgekit.errors import DataError

    predictor = Predictor(tiny_models["float"])
    bogus = tmp_path / "bogus.png"
    bogus.write_text("hello")
    with pytest.raises(DataError, match="bogus.png"):
        predictor.predict(bogus)
    with pytest.raises(DataError, match="uint8"):
        predictor.predict(np.zeros((8, 8, 3), dtype=np.float32))


def test_model_without_preprocessing_says_how_to_supply_it(tiny_models, test_images):
    with pytest.raises(ManifestError, match="no preprocessing") as info:
        Predictor(tiny_models["bare"])
    assert "--preprocess" in info.value.fix and "--mean" in info.value.fix
    explicit = Predictor(tiny_models["bare"], labels=LABELS, preprocessing=PRE.to_dict())
    assert explicit.predict(test_images[0]) == Predictor(tiny_models["float"]).predict(test_images[0])
    numbered = Predictor(tiny_models["bare"], preprocessing={"mean": list(PRE.mean), "std": list(PRE.std)})
    assert numbered.labels == [f"class_{i}" for i in range(10)] and numbered.preprocessing == PRE


def test_quantized_input_without_metadata_takes_raw_pixels(tiny_models, test_images, tmp_path):
    """An int8-input model with no metadata or manifest: pixel - 128 goes in, as its quantization implies."""
    bare = tmp_path / "model.tflite"
    bare.write_bytes(tiny_models["int8"].read_bytes())
    raw = Predictor(bare)
    spec = raw._backend.input
    assert spec.dtype == np.int8 and raw.preprocessing.mean == (spec.zero_point + 128.0,) * 3
    pixels = np.asarray(raw._pixels(test_images[0]), dtype=np.int16)
    assert np.array_equal(raw.preprocess(test_images[0])[0], (pixels - 128).astype(np.int8))


def test_wrong_label_count_or_input_size_is_refused(tiny_models):
    with pytest.raises(ManifestError, match="10 classes but 3 labels"):
        Predictor(tiny_models["bare"], labels=["a", "b", "c"], preprocessing=PRE.to_dict())
    with pytest.raises(ManifestError, match="32x32"):
        Predictor(tiny_models["bare"], labels=LABELS, preprocessing={"size": [64, 64]})


def test_tflite_metadata_round_trip_replaces_instead_of_duplicating(tiny_models, tmp_path, test_images):
    original = tiny_models["bare"].read_bytes()
    assert read_tflite_metadata(original) is None
    first = embed_tflite_metadata(original, make_metadata(["x"] * 10, PRE.to_dict()))
    second = embed_tflite_metadata(first, make_metadata(LABELS, PRE.to_dict()))
    assert read_tflite_metadata(second)["labels"] == LABELS
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(second, 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(b"edgekit") == 1 and b"min_runtime_version" in names
    target = tmp_path / "embedded.tflite"
    target.write_bytes(second)
    assert Predictor(target).predict(test_images[0]) == Predictor(tiny_models["float"]).predict(test_images[0])


def test_onnx_metadata_round_trip_is_readable_without_onnx_and_by_onnxruntime(tiny_models, tmp_path):
    import onnx
    import onnxruntime

    meta = read_onnx_metadata(tiny_models["onnx"])
    assert meta["labels"] == LABELS and meta["preprocessing"] == PRE.to_dict()
    proto = onnx.load(str(tiny_models["onnx"]))
    embed_onnx_metadata(proto, make_metadata(["z"] * 10, PRE.to_dict()))
    assert sum(p.key == "edgekit" for p in proto.metadata_props) == 1
    target = tmp_path / "relabelled.onnx"
    onnx.save(proto, str(target))
    assert read_onnx_metadata(target)["labels"] == ["z"] * 10
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map["edgekit"])["labels"] == ["z"] * 10


_NO_TF_SCRIPT = """
import json, sys
from edgekit.runtime import Predictor
out = {}
for model in sys.argv[2:]:
    p = Predictor(model)
    out[model] = [p.backend, p.predict(sys.argv[1], top_k=1)[0][0]]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "onnx", "tf2onnx"))
print(json.dumps({"heavy": heavy, "out": out}))
"""


def test_importing_the_runtime_and_predicting_never_imports_tensorflow(tiny_models, test_images):
    models = [str(tiny_models[k]) for k in ("float", "int8", "onnx")]
    proc = subprocess.run([sys.executable, "-c", _NO_TF_SCRIPT, str(test_images[0]), *models],
                          capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert [backend for backend, _ in report["out"].values()] == ["ai_edge_litert", "ai_edge_litert", "onnxruntime"]


def test_missing_edgetpu_runtime_raises_device_unavailable_naming_the_library(tiny_models):
    ok, reason = accelerator_available("edgetpu", "tflite")
    if ok:
        pytest.skip(f"an Edge TPU runtime is installed here: {reason}")
    with pytest.raises(DeviceUnavailableError, match="libedgetpu.so.1") as info:
        Predictor(tiny_models["int8"], accelerator="edgetpu")
    assert "apt-get install libedgetpu1-std" in info.value.fix
    assert accelerator_available("edgetpu", "onnx")[0] is False


def test_missing_gpu_raises_device_unavailable_for_tflite_and_onnx(tiny_models):
    tflite_ok, tflite_reason = accelerator_available("gpu", "tflite")
    onnx_ok, _ = accelerator_available("gpu", "onnx")
    if not tflite_ok:
        with pytest.raises(DeviceUnavailableError, match="gpu"):
            Predictor(tiny_models["float"], accelerator="gpu")
    if not onnx_ok:
        with pytest.raises(DeviceUnavailableError) as info:
            Predictor(tiny_models["onnx"], accelerator="gpu")
        assert "pip install onnxruntime-gpu" in info.value.fix
    if tflite_ok and onnx_ok:
        pytest.skip(f"GPU accelerators are available here ({tflite_reason})")


def test_accelerator_available_reports_cpu_and_rejects_unknown_names():
    assert accelerator_available("cpu", "tflite") == (True, "TFLite interpreter on the CPU (XNNPACK)")
    assert accelerator_available("cpu", "onnx")[0] is True
    ok, reason = accelerator_available("npu", "tflite")
    assert not ok and "unknown accelerator" in reason
