"""Cold start (import + load + first prediction) and peak RSS of the edgekit runtime vs TensorFlow/Keras.

Each measurement is a fresh Python process (so imports are really cold in-process; the OS file cache is
warm after the first run, as on a device that predicts repeatedly). Peak RSS is VmHWM from
/proc/self/status at the end of the run. Writes benchmarks/results/runtime_coldstart.{json,md}.

    python benchmarks/runtime_coldstart.py [--runs 5] [--size 96]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

_PRELUDE = """
import time
_t0 = time.perf_counter()
import json, sys
import numpy as np
"""
_EPILOGUE = """
_elapsed = time.perf_counter() - _t0
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
heavy = any(m.split(".")[0] in ("tensorflow", "tf_keras") for m in sys.modules)
print(json.dumps({"seconds": _elapsed, "vmhwm_mib": hwm / 1024, "tensorflow_loaded": heavy, "top1": top1}))
"""
CASES = {
    "edgekit runtime, float .tflite (LiteRT)": "from edgekit.runtime import Predictor\n"
        "p = Predictor(sys.argv[1] + '/float', verify={verify})\ntop1 = p.predict(sys.argv[2], top_k=1)[0][0]",
    "edgekit runtime, int8 .tflite (LiteRT)": "from edgekit.runtime import Predictor\n"
        "p = Predictor(sys.argv[1] + '/int8', verify={verify})\ntop1 = p.predict(sys.argv[2], top_k=1)[0][0]",
    "edgekit runtime, .onnx (onnxruntime)": "from edgekit.runtime import Predictor\n"
        "p = Predictor(sys.argv[1] + '/onnx')\ntop1 = p.predict(sys.argv[2], top_k=1)[0][0]",
    "TensorFlow: tf.lite.Interpreter, float .tflite": "from edgekit._tf import import_tf\ntf, _ = import_tf()\n"
        "from edgekit.data import load_image\nit = tf.lite.Interpreter(model_path=sys.argv[1] + '/float/model.tflite')\n"
        "it.allocate_tensors()\nx = ((load_image(sys.argv[2], ({size}, {size})) - 127.5) / 127.5)[None].astype('float32')\n"
        "it.set_tensor(it.get_input_details()[0]['index'], x); it.invoke()\n"
        "top1 = int(it.get_tensor(it.get_output_details()[0]['index']).argmax())",
    "TensorFlow/Keras: load .keras + predict": "from edgekit._tf import import_tf\ntf, keras = import_tf()\n"
        "from edgekit.data import load_image\nm = keras.models.load_model(sys.argv[1] + '/keras/model.keras', compile=False)\n"
        "x = ((load_image(sys.argv[2], ({size}, {size})) - 127.5) / 127.5)[None].astype('float32')\n"
        "top1 = int(m(x, training=False).numpy().argmax())",
}


def build_models(root: Path, size: int) -> Path:
    """MobileNetV2 alpha 0.35 (random init) at ``size`` px as .keras, float/int8 .tflite and .onnx with metadata."""
    import numpy as np

    from edgekit._tf import import_tf
    from edgekit.artifacts import Manifest, Preprocessing, write_artifact
    from edgekit.runtime import embed_onnx_metadata, embed_tflite_metadata, make_metadata

    tf, keras = import_tf()
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, weights=None, include_top=False)
    head = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(base.output))
    model = keras.Model(base.input, head)
    pre = Preprocessing(size=(size, size), mean=(127.5,) * 3, std=(127.5,) * 3)
    labels = [f"class-{i}" for i in range(10)]
    meta = make_metadata(labels, pre.to_dict())

    def manifest(fmt: str, name: str) -> Manifest:
        return Manifest(format=fmt, artifact=name, stage="benchmark", labels=labels, preprocessing=pre.to_dict())

    write_artifact(root / "keras", "model.keras", manifest("keras", "model.keras"), writer=lambda p: model.save(p))
    fixed = keras.Model(*_batch_one(keras, model, size))
    saved = root / "saved_model"
    tf.saved_model.save(fixed, str(saved))
    float_bytes = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)]
                                                for _ in range(20))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    int8_bytes = converter.convert()
    for name, data in (("float", float_bytes), ("int8", int8_bytes)):
        write_artifact(root / name, "model.tflite", manifest("tflite", "model.tflite"),
                       writer=lambda p, d=data: p.write_bytes(embed_tflite_metadata(d, meta)))
    import onnx
    import tf2onnx

    proto, _ = tf2onnx.convert.from_keras(fixed, input_signature=(tf.TensorSpec((1, size, size, 3), tf.float32),),
                                          opset=13)
    embed_onnx_metadata(proto, meta)
    write_artifact(root / "onnx", "model.onnx", manifest("onnx", "model.onnx"),
                   writer=lambda p: onnx.save(proto, str(p)))
    return root


def _batch_one(keras, model, size: int):
    """The same layers behind a batch-1 input (what devices and the Edge TPU compiler want)."""
    inputs = keras.Input((size, size, 3), batch_size=1)
    return inputs, model(inputs)


def measure(code: str, models: Path, image: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PRELUDE + code + _EPILOGUE, str(models), str(image)],
                          capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    from PIL import Image

    from edgekit.artifacts import library_versions, write_json_atomic, write_text_atomic

    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp) / "models", args.size)
        image = Path(tmp) / "photo.png"
        Image.effect_mandelbrot((160, 120), (-2, -1.2, 1, 1.2), 60).convert("RGB").save(image)
        cases = {f"{name} [verify {'on' if verify else 'off'}]" if "{verify}" in code else name:
                 code.format(verify=verify, size=args.size)
                 for name, code in CASES.items() for verify in ((True, False) if "{verify}" in code else (None,))}
        rows = {}
        for name, code in cases.items():
            runs = [measure(code, models, image) for _ in range(args.runs)]
            rows[name] = {"in_process_seconds_median": statistics.median(r["seconds"] for r in runs),
                          "process_seconds_median": statistics.median(r["process_seconds"] for r in runs),
                          "vmhwm_mib_median": statistics.median(r["vmhwm_mib"] for r in runs),
                          "tensorflow_loaded": runs[0]["tensorflow_loaded"], "runs": args.runs}
            print(f"{name}: {rows[name]}", flush=True)
    report = {"model": f"MobileNetV2 alpha 0.35, {args.size}px, random init, 10 classes", "runs": args.runs,
              "versions": library_versions("ai-edge-litert", "onnxruntime", "tensorflow", "tf-keras"), "results": rows}
    RESULTS.mkdir(exist_ok=True)
    write_json_atomic(RESULTS / "runtime_coldstart.json", report)
    lines = [f"# Runtime cold start: {report['model']}", "",
             f"Fresh process per run, median of {args.runs}; in-process = import + load + first prediction; "
             "process = the whole `python -c` including interpreter start-up; peak RSS = VmHWM.", "",
             "| case | in-process s | process s | peak RSS MiB | TF loaded |", "| --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {name} | {r['in_process_seconds_median']:.2f} | {r['process_seconds_median']:.2f} | "
              f"{r['vmhwm_mib_median']:.0f} | {'yes' if r['tensorflow_loaded'] else 'no'} |" for name, r in rows.items()]
    write_text_atomic(RESULTS / "runtime_coldstart.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
