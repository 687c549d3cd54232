"""Cold start of one prediction: `edgekit predict` against the bare LiteRT floor and the TensorFlow path.

One image, an int8 MobileNetV2 (224 px) finetuned on clothing-small. Every measurement is a whole fresh
process (interpreter start-up + imports + load + preprocessing + one inference + output), pinned to one
core, in interleaved rounds (benchmarks/harness.py):

- the floor: a bare script with numpy + Pillow + ai_edge_litert's Interpreter and edgekit's preprocessing
  (EXIF transpose, RGB, bilinear resize, (x - mean) / std, int8 quantization of the input);
- `edgekit predict MODEL IMAGE` with safety verification on, first run on this model (empty user cache:
  the model is loaded once in a verification subprocess) and later runs (the verdict cached by sha256);
- the floor script through TensorFlow's `tf.lite.Interpreter`.

Ratios to the floor are taken round by round. Goals: cached <= 1.5x the floor, first run <= 2.5x,
TensorFlow path >= 10x slower than cached edgekit. Writes benchmarks/results/runtime_coldstart.{json,md}.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLOTHING, clothing_tflite_pair  # noqa: E402
from harness import (REPO, cell, environment, environment_lines, finish, interleaved, pair_ratios, pinned_cores,  # noqa: E402
                     run_process, summarize, write_results)

SIZE, ROUNDS = 224, 5  # the TensorFlow case takes seconds per run: 5 rounds keep the benchmark short
GOALS = {"edgekit predict, later runs (cached)": 1.5, "edgekit predict, first run on the model": 2.5}
TF_SPEEDUP_GOAL = 10.0
FLOOR = """
import json, sys
import numpy as np
from PIL import Image, ImageOps
{import_interpreter}
model, image, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
mean, std = (np.asarray(json.loads(a), dtype=np.float32) for a in sys.argv[4:6])
with Image.open(image) as picture:
    picture.draft("RGB", (size * 2, size * 2))
    picture = ImageOps.exif_transpose(picture).convert("RGB").resize((size, size), Image.BILINEAR)
    x = (np.asarray(picture, dtype=np.float32) - mean) / std
interpreter = Interpreter(model_path=model)
interpreter.allocate_tensors()
source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
scale, zero = source["quantization"]
if scale:
    info = np.iinfo(source["dtype"])
    x = np.clip(np.round(x / scale + zero), info.min, info.max)
interpreter.set_tensor(source["index"], x[None].astype(source["dtype"]))
interpreter.invoke()
y = interpreter.get_tensor(target["index"]).astype(np.float32)
scale, zero = target["quantization"]
y = (y - zero) * scale if scale else y
print(json.dumps({{"top1": int(y.argmax())}}))
"""
LITERT = "from ai_edge_litert.interpreter import Interpreter"
TENSORFLOW = "import tensorflow as tf\nInterpreter = tf.lite.Interpreter"


def main() -> int:
    if not (CLOTHING / "train").is_dir():
        print(f"skipped: {CLOTHING} not found (set EDGEKIT_SHARED)", file=sys.stderr)
        return 0
    from edgekit.artifacts import load_artifact

    model = clothing_tflite_pair(SIZE)["int8"]
    artifact = load_artifact(model.parent)
    pre = artifact.manifest.preprocessing
    image = sorted((CLOTHING / "test").rglob("*.jpg"))[0]
    cores = pinned_cores(1)
    # As installed: bytecode caches written on the first (warm-up) run and reused, as pip's install would.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               TF_CPP_MIN_LOG_LEVEL="3")
    floor_args = [str(model), str(image), str(SIZE), json.dumps(pre["mean"]), json.dumps(pre["std"])]
    predict = [sys.executable, "-m", "edgekit", "predict", str(model.parent), str(image), "--top-k", "1"]
    with tempfile.TemporaryDirectory(prefix="edgekit-coldstart-") as scratch:
        warm_cache = Path(scratch) / "warm"
        run_process(predict, cores=cores, env=dict(env, XDG_CACHE_HOME=str(warm_cache)))  # verify once

        def first_run() -> dict:
            cold_cache = Path(scratch) / "cold"
            shutil.rmtree(cold_cache, ignore_errors=True)
            return run_process(predict, cores=cores, env=dict(env, XDG_CACHE_HOME=str(cold_cache)))

        cases = {
            "bare LiteRT floor": lambda: run_process(
                [sys.executable, "-c", FLOOR.format(import_interpreter=LITERT), *floor_args], cores=cores, env=env),
            "edgekit predict, later runs (cached)": lambda: run_process(
                predict, cores=cores, env=dict(env, XDG_CACHE_HOME=str(warm_cache))),
            "edgekit predict, first run on the model": first_run,
            "same script through TensorFlow's tf.lite": lambda: run_process(
                [sys.executable, "-c", FLOOR.format(import_interpreter=TENSORFLOW), *floor_args], cores=cores, env=env),
        }
        setting = environment(cores=cores, rounds=ROUNDS)
        samples = interleaved(cases, rounds=ROUNDS)
        agreement = _same_top1(predict, floor_args, artifact.manifest.labels, cores, env, warm_cache)
    setting = finish(setting)
    wall, memory = summarize(samples, "wall_s"), summarize(samples, "peak_rss_mib")
    ratios = pair_ratios(samples, "wall_s", "bare LiteRT floor")
    cpu, cpu_ratios = summarize(samples, "cpu_s"), pair_ratios(samples, "cpu_s", "bare LiteRT floor")
    cached = samples["edgekit predict, later runs (cached)"]
    tf_speedup = pair_ratios({"edgekit": cached, "tf": samples["same script through TensorFlow's tf.lite"]},
                             "wall_s", "edgekit")["tf"]
    goals = {name: {"goal_ratio_max": goal, "ratio_median": ratios[name]["median"],
                    "met": ratios[name]["median"] <= goal} for name, goal in GOALS.items()}
    goals["TensorFlow path vs edgekit (cached)"] = {"goal_ratio_min": TF_SPEEDUP_GOAL,
                                                    "ratio_median": tf_speedup["median"],
                                                    "met": tf_speedup["median"] >= TF_SPEEDUP_GOAL}
    payload = {"benchmark": "runtime_coldstart", "environment": setting,
               "model": f"MobileNetV2 {SIZE} px int8, finetuned on clothing-small ({artifact.manifest.sha256[:12]})",
               "image": str(image.relative_to(CLOTHING.parent)), "verification": "on (edgekit default)",
               "floor_s": wall["bare LiteRT floor"], "wall_s": wall, "cpu_s": cpu, "peak_rss_mib": memory,
               "ratio_to_floor": ratios, "cpu_ratio_to_floor": cpu_ratios, "tensorflow_vs_edgekit_cached": tf_speedup, "goals": goals,
               "same_top1_as_floor": agreement}
    lines = [f"# Cold start of one prediction: {payload['model']}", "",
             "Whole fresh process (start-up, imports, load, preprocessing, one inference), pinned to one core; "
             f"{setting['rounds']} interleaved rounds after {setting['warmup_rounds']} warm-up; medians [min-max]; "
             "ratio to the floor taken round by round. CPU s (user + system, children included) moves much less "
             "with other people's load than wall time.", "",
             "| case | wall s | ratio to floor | goal | CPU s | CPU ratio | peak RSS MiB |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for name in cases:
        ratio = ratios.get(name)
        goal = goals.get(name)
        goal_text = "-" if goal is None else f"<= {goal['goal_ratio_max']}x: {'met' if goal['met'] else 'MISSED'}"
        lines.append(f"| {name} | {cell(wall[name], '.3f', '')} | {cell(ratio) if ratio else '1x'} | "
                     f"{goal_text} | {cpu[name]['median']:.3f} | "
                     f"{cell(cpu_ratios[name]) if name in cpu_ratios else '1x'} | {memory[name]['median']:.0f} |")
    tf_goal = goals["TensorFlow path vs edgekit (cached)"]
    lines += ["", f"TensorFlow path / edgekit (cached): {cell(tf_speedup, '.1f')} "
              f"(goal >= {TF_SPEEDUP_GOAL:.0f}x: {'met' if tf_goal['met'] else 'MISSED'}). "
              f"Same top-1 as the floor: {agreement}.", *environment_lines(setting)]
    write_results("runtime_coldstart", payload, lines)
    return 0


def _same_top1(predict, floor_args, labels, cores, env, cache: Path) -> bool:
    """Whether `edgekit predict --json` and the floor name the same class (they share the preprocessing)."""
    ours = run_process(predict + ["--json"], cores=cores, env=dict(env, XDG_CACHE_HOME=str(cache)))["reported"]
    floor = run_process([sys.executable, "-c", FLOOR.format(import_interpreter=LITERT), *floor_args],
                        cores=cores, env=env)["reported"]
    return ours["results"][0]["top_k"][0]["label"] == labels[floor["top1"]]


if __name__ == "__main__":
    sys.exit(main())
