"""edgekit's GPU paths on a real GPU machine, as a user with the light runtime installed from the wheel sees them.

Two steps, because the GPU machine is lent for minutes and has no network:

``measure`` (on the GPU machine; edgekit from its wheel with the runtime extra, no TensorFlow):

1. ``edgekit devices`` and a GPU profile before and after the Vulkan loader is unpacked (``--vulkan-debs``:
   Debian's libvulkan1 and the GL/EGL dispatch libraries, ``dpkg -x`` into ``/``), verbatim;
2. latency of each .tflite model on ``gpu`` (LiteRT ``CompiledModel``, WebGPU over Vulkan), ``cpu`` (every
   core) and ``cpu-1t``: the profiler's own fresh pinned process per measurement (``measure_local``), one
   unrecorded warm-up round, then interleaved rounds (every model x device once per round), p50 of the timed
   runs per process, medians with min and max over rounds; LiteRT's own benchmark tool on the GPU beside it;
3. the outputs of the GPU against the CPU (same model, same preprocessed photos): top-1 agreement, top-1
   accuracy of each against the folder labels, largest output difference; LiteRT's ``enforce_f32`` GPU
   option beside the default (which may compute in float16);
4. the error paths: no GPU adapter (``VK_DRIVER_FILES`` pointing nowhere), .onnx on ``gpu`` without
   onnxruntime-gpu, and ``onnxruntime.get_available_providers()``.

It writes one JSON file (rewritten after each step, so a run cut short still returns what it measured).

``report`` (here): ``python benchmarks/gpu_device.py report RAW.json`` writes
``benchmarks/results/gpu_h200.{json,md}`` from what came back.

How to run it on a lent machine (README "GPU, measured"): build the wheel, put it, the runtime wheels for the
machine's Python, the Vulkan debs, the models and a photo folder in one carried folder, then
``python benchmarks/gpu_device.py measure --models DIR --photos DIR --vulkan-debs DIR --out raw.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import accuracy_drop, environment, finish, run_process, spread, write_results  # noqa: E402

TFLITE_MODELS = ("float32", "float16", "int8")
DEVICES = ("gpu", "cpu", "cpu-1t")
RUNS, WARMUP, MAX_ROUNDS, MIN_ROUNDS = 100, 10, 7, 3
NVIDIA_ICD = Path("/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json")  # where this machine's driver keeps it
RESULT_NAME = "gpu_h200"


def cli(*args: str, env: dict | None = None, timeout_s: float = 180) -> dict:
    """One `edgekit` command as a user types it: its exit code and what it printed."""
    done = subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout_s)
    return {"argv": ["edgekit", *args], "env": env or {}, "rc": done.returncode, "stdout": done.stdout,
            "stderr": done.stderr}


def vulkan_loadable() -> bool:
    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return False
    return True


def unpack_debs(folder: Path) -> list[str]:
    """``dpkg -x`` each .deb into ``/`` and refresh the linker cache (the device README's recipe)."""
    debs = sorted(folder.glob("*.deb"))
    for deb in debs:
        subprocess.run(["dpkg", "-x", str(deb), "/"], check=True)
    subprocess.run(["ldconfig"], check=True)
    return [deb.name for deb in debs]


def set_up_vulkan(folder: Path) -> dict:
    """The Vulkan loader from ``folder``'s .debs (:func:`unpack_debs`), and ``VK_DRIVER_FILES`` pointed at the
    driver's ICD where it lies outside the loader's search path; what was done, for the results."""
    loader: dict = {"debs": unpack_debs(folder)}
    if NVIDIA_ICD.is_file() and not any(Path(d, "nvidia_icd.json").is_file()
                                        for d in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d")):
        os.environ["VK_DRIVER_FILES"] = str(NVIDIA_ICD)
        loader["VK_DRIVER_FILES"] = str(NVIDIA_ICD)
    return loader


def litert_tool_command(model: Path, result_json: Path, *, gpu: bool = True) -> list[str]:
    """LiteRT's own benchmark tool on ``model``, GPU only (``--use_gpu --no_cpu``) unless ``gpu`` is False:
    RUNS timed runs after WARMUP, its numbers written to ``result_json``."""
    return [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={model}",
            *(["--use_gpu", "--no_cpu"] if gpu else []), f"--num_runs={RUNS}", f"--warmup_runs={WARMUP}",
            f"--result_json={result_json}"]


def gpu_facts() -> dict:
    """The GPU and driver as nvidia-smi names them."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    return {"nvidia_smi": done.stdout.strip() or done.stderr.strip()}


def latency_case(model: Path, device_name: str) -> dict:
    """One fresh pinned process through edgekit's backends, as `edgekit profile --device NAME` runs it."""
    from edgekit.devices import get_device
    from edgekit.runtime.latency import measure_local

    device = get_device(device_name)
    raw = measure_local(model, accelerator=device.accelerator, threads=device.resolved_threads(), runs=RUNS,
                        warmup=WARMUP)
    return {"p50_ms": raw["stats"]["p50_ms"], "min_ms": raw["stats"]["min_ms"], "max_ms": raw["stats"]["max_ms"],
            "cpu_p50_ms": raw["cpu_stats"]["p50_ms"], "init_ms": raw["init_ms"],
            "first_inference_ms": raw["first_inference_ms"], "threads": raw["threads"], "backend": raw["backend"],
            "fully_accelerated": raw.get("fully_accelerated"), "peak_mib": (raw["memory"]["peak_kib"] or 0) / 1024}


def latency(models: dict[str, Path], budget_s: float, checkpoint) -> dict:
    """A warm-up round (a case that fails there is recorded and left out), then interleaved rounds: as many as
    ``budget_s`` allows after the warm-up round's pace, between MIN_ROUNDS and MAX_ROUNDS. ``checkpoint(partial)``
    gets the summary after every round, so a run cut short keeps the rounds it finished."""
    from edgekit.errors import EdgekitError
    from edgekit.runtime.latency import interleaved_rounds

    cases = {f"{name} on {device}": (path, device) for name, path in models.items() for device in DEVICES}
    failed, started = {}, time.monotonic()
    for case, (path, device) in list(cases.items()):
        try:
            latency_case(path, device)
        except EdgekitError as exc:
            failed[case] = exc.one_line()
            del cases[case]
    per_round = max(time.monotonic() - started, 1e-3)
    rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, (budget_s - per_round) // per_round)))
    names, rows = list(cases), {case: [] for case in cases}
    summary = {"rounds": rounds, "warmup_rounds": 1, "runs": RUNS, "warmup": WARMUP, "failed": failed,
               "warmup_round_s": round(per_round, 1),
               "method": "fresh process per measurement (edgekit's profiler runner, measure_local) pinned to the "
                         "device profile's threads (gpu: 1 core, cpu: every core, cpu-1t: 1 core); one unrecorded "
                         "warm-up round, then interleaved rounds (every model x device once per round); per process "
                         f"the p50 of {RUNS} timed inferences after {WARMUP} warm-up ones, each inference = write "
                         "the input, run, read the output back; medians with min and max over rounds"}

    def after_round(index: int, measured: list[dict]) -> None:
        print(f"  round {index + 1}/{rounds}: " + ", ".join(f"{n} {m['p50_ms']:.3f}" for n, m in zip(names, measured)),
              file=sys.stderr, flush=True)
        for case, row in zip(names, measured):
            rows[case].append(row)
        summary["cases"] = summarize_cases(models, rows)
        checkpoint(summary)

    interleaved_rounds(names, lambda case: latency_case(*cases[case]), rounds=rounds, on_round=after_round)
    return summary


def summarize_cases(models: dict[str, Path], rows: dict[str, list[dict]]) -> dict:
    """Per case: spreads over the rounds so far; the GPU's speed-up over each CPU device, round by round."""
    summary = {}
    for case, own in rows.items():
        summary[case] = {"p50_ms": spread([r["p50_ms"] for r in own]), "min_ms": min(r["min_ms"] for r in own),
                         "cpu_p50_ms": spread([r["cpu_p50_ms"] for r in own]),
                         "init_ms": spread([r["init_ms"] for r in own]),
                         "first_inference_ms": spread([r["first_inference_ms"] for r in own]),
                         "peak_mib": spread([r["peak_mib"] for r in own]), "threads": own[0]["threads"],
                         "backend": own[0]["backend"], "fully_accelerated": own[0]["fully_accelerated"],
                         "round_p50_ms": [r["p50_ms"] for r in own]}
    for name in models:
        gpu = f"{name} on gpu"
        for cpu in ("cpu", "cpu-1t"):
            other = f"{name} on {cpu}"
            if gpu in summary and other in summary:
                summary[gpu][f"speedup_vs_{cpu}"] = spread([c / g for g, c in zip(summary[gpu]["round_p50_ms"],
                                                                                  summary[other]["round_p50_ms"])])
    return summary


def litert_tool_on_gpu(models: dict[str, Path], work: Path) -> dict:
    """LiteRT's own benchmark tool, GPU only (``--use_gpu --no_cpu``): times ``run_by_name`` on buffers it made
    once, without the input write and output read edgekit's numbers include. One process per model."""
    rows = {}
    for name, path in models.items():
        out = work / f"tool-{name}.json"
        try:
            done = run_process(litert_tool_command(path, out), cores=[0], timeout_s=180)
            rows[name] = {"result": json.loads(out.read_text()), "wall_s": done["wall_s"]}
        except (RuntimeError, OSError, json.JSONDecodeError) as exc:
            rows[name] = {"error": str(exc)}
    return rows


def enforce_f32_outputs(path: Path, inputs):
    """The GPU's outputs with LiteRT's ``GpuOptions(enforce_f32=True)`` (edgekit uses LiteRT's default)."""
    import numpy as np
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import GpuOptions, Options

    from edgekit.runtime.backends import tflite_io_specs

    data = path.read_bytes()
    spec_in, spec_out = tflite_io_specs(data)
    model = CompiledModel.from_buffer(data, options=Options(hardware_accelerators=HardwareAccelerator.GPU,
                                                            gpu_options=GpuOptions(enforce_f32=True)))
    ins, outs = model.create_input_buffers(0), model.create_output_buffers(0)
    count, rows = int(np.prod(spec_out.shape)), []
    for sample in spec_in.quantize(inputs):
        ins[0].write(np.ascontiguousarray(sample[None]))
        model.run_by_index(0, ins, outs)
        rows.append(spec_out.dequantize(outs[0].read(count, spec_out.dtype).reshape(spec_out.shape)))
    return np.concatenate(rows)


def compare_outputs(reference, other, labels) -> dict:
    import numpy as np

    top_ref, top_other = reference.argmax(1), other.argmax(1)
    diff = np.abs(reference - other)
    return {"top1_agreement": float(np.mean(top_ref == top_other)), "disagreements": int(np.sum(top_ref != top_other)),
            "top1_accuracy": float(np.mean(top_other == labels)), "max_abs_diff": float(diff.max()),
            "median_abs_diff": float(np.median(diff)), "drop_vs_cpu": accuracy_drop(labels, top_ref, top_other)}


def agreement(models: dict[str, Path], photos: Path) -> dict:
    """GPU against CPU on the same preprocessed photos, per model (outputs as the model gives them)."""
    import numpy as np

    from edgekit.errors import EdgekitError
    from edgekit.runtime import Predictor
    from edgekit.runtime.backends import run_float

    images = sorted(p for p in photos.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rows = {}
    for name, path in models.items():
        reader = Predictor(path, accelerator="cpu")
        labels = np.array([reader.labels.index(p.parent.name) for p in images])
        inputs = np.concatenate([reader.preprocess(p) for p in images]).astype(np.float32)
        cpu = run_float(path, inputs, accelerator="cpu", threads=None)
        row = {"images": len(images), "classes": len({p.parent.name for p in images}),
               "cpu_top1_accuracy": float(np.mean(cpu.argmax(1) == labels))}
        try:
            row["gpu"] = compare_outputs(cpu, run_float(path, inputs, accelerator="gpu"), labels)
        except EdgekitError as exc:
            row["gpu"] = {"error": exc.one_line()}
        try:
            row["gpu_enforce_f32"] = compare_outputs(cpu, enforce_f32_outputs(path, inputs), labels)
        except RuntimeError as exc:
            row["gpu_enforce_f32"] = {"error": str(exc).splitlines()[0]}
        rows[name] = row
    return rows


def measure(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out = Path(args.out)
    models = {name: args.models / name / "model.tflite" for name in TFLITE_MODELS}
    onnx = args.models / "onnx-fp32" / "model.onnx"
    photo = next(iter(sorted(args.photos.glob("*/*.jpg"))))
    import edgekit

    result: dict = {"environment": environment(), "gpu": gpu_facts(), "wheel": args.wheel, "edgekit": edgekit.__file__,
                    "cwd": os.getcwd(),
                    "commit": args.commit, "models": {n: str(p) for n, p in {**models, "onnx-fp32": onnx}.items()}}

    def save(step: str) -> None:
        result["steps_done"] = result.get("steps_done", []) + [step]
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        out.write_text(json.dumps(result, indent=1, default=str))
        print(f"[{result['elapsed_s']:.0f} s] {step} done", file=sys.stderr, flush=True)

    result["before_loader"] = {"libvulkan_loadable": vulkan_loadable(), "devices": cli("devices"),
                               "profile_gpu": cli("profile", str(models["int8"]), "--device", "gpu")}
    save("before_loader")
    if args.vulkan_debs:
        result["loader"] = set_up_vulkan(args.vulkan_debs)
    import onnxruntime

    from edgekit.runtime import accelerator_available

    result["after_loader"] = {
        "libvulkan_loadable": vulkan_loadable(), "devices": cli("devices"), "devices_json": cli("devices", "--json"),
        "accelerator_available": {fmt: accelerator_available("gpu", fmt) for fmt in ("tflite", "onnx")},
        "onnxruntime": {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()},
        "predict_gpu": cli("predict", str(models["float32"]), str(photo), "--accelerator", "gpu", "--top-k", "3"),
        "profile_gpu_cpu": cli("profile", str(models["float32"]), "--device", "gpu", "--device", "cpu-1t",
                               "--runs", "30"),
        "no_adapter": cli("predict", str(models["float32"]), str(photo), "--accelerator", "gpu",
                          env={"VK_DRIVER_FILES": "/nonexistent/icd.json"}),
        "onnx_on_gpu": cli("predict", str(onnx), str(photo), "--accelerator", "gpu"),
    }
    save("after_loader")
    result["agreement"] = agreement(models, args.photos)
    save("agreement")

    def checkpoint(partial: dict) -> None:
        result["latency"] = partial
        save("latency round")

    latency(models, budget_s=args.latency_budget_s, checkpoint=checkpoint)
    save("latency")
    result["litert_tool_gpu"] = litert_tool_on_gpu(models, out.parent)
    save("litert_tool_gpu")
    result["environment"] = finish(result["environment"])
    save("finished")
    return 0


def phases(path: Path, iterations: int = 200, warmup: int = 20) -> dict:
    """Where one GPU inference's time goes, in this process: writing the input buffer, ``run_by_index``, reading
    the output back (the read waits for the GPU). LiteRT's tool times the middle one alone."""
    import numpy as np

    from edgekit.runtime.backends import LiteRTCompiledBackend

    backend = LiteRTCompiledBackend(path, hardware="GPU")
    sample = np.zeros(backend.input.shape, backend.input.dtype)
    backend.run(sample)
    times: dict[str, list[float]] = {"write": [], "run": [], "read": []}
    inputs, results = backend._inputs, backend._results
    for i in range(warmup + iterations):
        t0 = time.perf_counter()
        inputs[0].write(sample)
        t1 = time.perf_counter()
        backend.model.run_by_index(0, inputs, results)
        t2 = time.perf_counter()
        results[0].read(backend._count, backend.output.dtype)
        t3 = time.perf_counter()
        if i >= warmup:
            for name, value in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[name].append(value * 1000)
    return {name: spread(values) for name, values in times.items()}


def check(args: argparse.Namespace) -> int:
    """The second, short call: what a script sees from `predict --json` on the GPU after the stdout fix, where a
    GPU inference's time goes, and the outputs' agreement on every test photo."""
    out = Path(args.out)
    models = {name: args.models / name / "model.tflite" for name in TFLITE_MODELS}
    photo = next(iter(sorted(args.photos.glob("*/*.jpg"))))
    if args.vulkan_debs:
        unpack_debs(args.vulkan_debs)
    result: dict = {"wheel": args.wheel, "commit": args.commit, "cwd": os.getcwd(), "date": environment()["date"]}
    as_json = cli("predict", str(models["float32"]), str(photo), "--accelerator", "gpu", "--json")
    try:
        json.loads(as_json["stdout"])
        as_json["stdout_is_json"] = True
    except json.JSONDecodeError:
        as_json["stdout_is_json"] = False
    result["predict_json"] = as_json
    result["predict_text"] = cli("predict", str(models["int8"]), str(photo), "--accelerator", "gpu", "--top-k", "3")
    out.write_text(json.dumps(result, indent=1, default=str))
    from edgekit.errors import EdgekitError

    result["phases"] = {}
    for name, path in models.items():
        try:
            result["phases"][name] = phases(path)
        except EdgekitError as exc:
            result["phases"][name] = {"error": exc.one_line()}
    out.write_text(json.dumps(result, indent=1, default=str))
    result["agreement"] = agreement(models, args.photos)
    out.write_text(json.dumps(result, indent=1, default=str))
    return 0


def _cell(stats: dict, unit: str = " ms", fmt: str = ".3f") -> str:
    return f"{stats['median']:{fmt}}{unit} [{stats['min']:{fmt}}-{stats['max']:{fmt}}]"


def _command_block(run: dict) -> list[str]:
    text = (run["stdout"] + run["stderr"]).rstrip()
    env = " ".join(f"{k}={v}" for k, v in run["env"].items())
    return ["```", f"$ {env + ' ' if env else ''}{' '.join(run['argv'])}   # exit {run['rc']}", text, "```"]


def _load(path: Path, site: str) -> dict:
    """A JSON file from the GPU machine, its install folder shown as $SITE and its paths relative to its folder."""
    text = Path(path).read_text()
    return json.loads(text.replace(site, "$SITE").replace(json.loads(text)["cwd"] + "/", ""))


def _latency_lines(lat: dict) -> list[str]:
    lines = ["| model | device | p50 ms, median [min-max] over rounds | fastest run ms | CPU ms per inference | "
             "GPU speed-up vs cpu / cpu-1t | init ms | whole graph on the GPU |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for case, row in lat.get("cases", {}).items():
        model, device = case.split(" on ")
        speed = " / ".join(_cell(row[k], "x", ".2f") for k in ("speedup_vs_cpu", "speedup_vs_cpu-1t") if k in row)
        whole = "-" if row["fully_accelerated"] is None else ("yes" if row["fully_accelerated"] else "no")
        lines.append(f"| {model} | {device} ({row['threads']} thr) | {_cell(row['p50_ms'])} | {row['min_ms']:.3f} | "
                     f"{row['cpu_p50_ms']['median']:.3f} | {speed or '-'} | {row['init_ms']['median']:.0f} | {whole} |")
    lines += [f"| {case.replace(' on ', ' | ')} | failed: {error} | | | | | |" for case, error in lat.get("failed", {}).items()]
    return lines


def _agreement_lines(rows: dict) -> list[str]:
    lines = ["| model | photos | top-1 agreement with the CPU | CPU top-1 | GPU top-1 | GPU drop vs CPU, pts [95% CI] | "
             "largest output difference | with enforce_f32: agreement, drop pts [95% CI], largest difference |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def cells(found: dict) -> list[str]:
        if "error" in found:
            return [f"failed: {found['error']}", "-", "-", "-"]
        drop = found["drop_vs_cpu"]
        return [f"{found['top1_agreement']:.3f} ({found['disagreements']} differ)", f"{found['top1_accuracy']:.3f}",
                f"{drop['drop_points']:+.2f} [{drop['ci95_points'][0]:+.2f}, {drop['ci95_points'][1]:+.2f}]",
                f"{found['max_abs_diff']:.2g}"]

    for name, row in rows.items():
        gpu, f32 = cells(row["gpu"]), cells(row["gpu_enforce_f32"])
        lines.append(f"| {name} | {row['images']} ({row['classes']} classes) | {gpu[0]} | {row['cpu_top1_accuracy']:.3f} | "
                     f"{gpu[1]} | {gpu[2]} | {gpu[3]} | {f32[0]}, {f32[2]}, {f32[3]} |")
    return lines


def _gap_lines(gap: dict, note: str) -> list[str]:
    """The variants `gpu_gap.py measure` timed: which of edgekit's and the tool's differences holds the time."""
    from gpu_gap import table

    env = gap["environment"]
    return ["", "### Where edgekit's time and the tool's part (`benchmarks/gpu_gap.py`)", "",
            f"{gap['model']} on a later loan of the same kind of machine, measured {env['date']} (load average "
            f"{env['load_before']['1min']} "
            f"before, {env['load_after']['1min']} after), the wheel of commit {gap['commit']}: {gap['method']}; "
            f"{gap['rounds']} rounds. Step columns: medians over rounds of each step's p50 (run: `run_by_index`, or "
            "`run_by_name` where the variant uses it); CPU share: the process's CPU time over the timed loop's wall "
            "time (the edgekit runner's: its CPU p50 over its p50)."
            + (f" The tool's own runs in its last round: min {tool['min_ms']}, p5 {tool['p5_ms']}, median "
               f"{tool['median_ms']}, p95 {tool['p95_ms']}, max {tool['max_ms']} ms."
               if (tool := gap.get("litert_tool_last_round", {}).get("latency")) else ""), "", table(gap), "", note]


def report(args: argparse.Namespace) -> int:
    """benchmarks/results/gpu_h200.{json,md} from the JSON files ``measure`` and ``check`` wrote on the GPU machine."""
    raw, checked = _load(args.raw, args.site), _load(args.check, args.site)
    lat, env, after = raw["latency"], raw["environment"], raw["after_loader"]
    tools = raw["litert_tool_gpu"]
    md = ["# edgekit on a GPU: NVIDIA H200 (LiteRT's WebGPU accelerator over Vulkan)", "",
          f"Machine: {raw['gpu']['nvidia_smi']}; {env['machine']['cpu']} ({env['machine']['cores']} cores); "
          f"{env['machine']['platform']}; lent for minutes, running nothing else (load average "
          f"{env['load_before']['1min']} before, {env['load_after']['1min']} after). Measured {env['date']}. "
          "edgekit from its wheel, installed with `pip --no-index --no-deps --target` with ai-edge-litert and the "
          "core dependencies the machine lacked, beside its own numpy, Pillow and onnxruntime; no TensorFlow. Versions: "
          + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if k != "platform") + ".",
          f"Latency, devices and error paths: the wheel of commit {raw['commit']}; the check after the output fixes "
          f"(agreement on every test photo, time split, `predict --json`): commit {checked['commit']} "
          f"({checked['date']}). Models: MobileNetV2 224 px finetuned on clothing-small (one parent), converted to "
          "float32, float16 and full-int8 .tflite. `python benchmarks/gpu_device.py` made and reads every number.", "",
          "## Latency", "", lat["method"] + f"; {lat['rounds']} rounds.", ""] + _latency_lines(lat)
    md += ["", "Where one GPU inference's time goes (same process, 200 inferences after 20, median ms), against LiteRT's "
           f"own benchmark tool (`--use_gpu --no_cpu`, {RUNS} runs, times `run_by_name` alone):", "",
           "| model | write input | run | read output (waits for the GPU) | LiteRT tool median run | tool init ms |",
           "| --- | --- | --- | --- | --- | --- |"]
    for name, split in checked["phases"].items():
        tool = tools[name].get("result", {}).get("latency", {})
        md.append(f"| {name} | {split['write']['median']:.3f} | {split['run']['median']:.3f} | "
                  f"{split['read']['median']:.3f} | {tool.get('median_ms', '-')} | {tool.get('init_ms', '-')} |")
    if args.gap:
        md += _gap_lines(_load(args.gap, args.site), args.gap_note)
    md += ["", "## GPU outputs against the CPU (same model, same preprocessed photos)", "",
           f"clothing-small test/ (never used in training or calibration). CPU: `cpu` ({env['machine']['cores']} "
           "threads, XNNPACK). GPU: edgekit's default (LiteRT's GPU options left at theirs); enforce_f32: LiteRT's "
           "`GpuOptions(enforce_f32=True)` through LiteRT directly. Drop: positive = the GPU lost accuracy, 95% "
           "interval for paired answers.", ""] + _agreement_lines(checked["agreement"])
    md += ["", "## What a user sees", "", "Before the Vulkan loader is installed:", ""]
    md += _command_block(raw["before_loader"]["devices"]) + _command_block(raw["before_loader"]["profile_gpu"])
    md += ["", f"After unpacking {', '.join(raw['loader']['debs'])} (commit {raw['commit']}: LiteRT's own lines "
           "still reached the terminal, `INFO: Loaded OpenCL library with dlopen.` on stdout):", ""]
    for key in ("devices", "predict_gpu", "profile_gpu_cpu", "no_adapter", "onnx_on_gpu"):
        md += _command_block(after[key])
    as_json = checked["predict_json"]
    md += ["", f"After the fixes (commit {checked['commit']}): `edgekit predict ... --accelerator gpu --json` exited "
           f"{as_json['rc']}, its stdout parsed as JSON: {as_json['stdout_is_json']}, stderr held "
           f"{len(as_json['stderr'])} bytes; the text answer:", ""] + _command_block(checked["predict_text"])
    ort = after["onnxruntime"]
    md += ["", f"onnxruntime {ort['version']} there: providers {ort['providers']}. The CUDA execution provider was "
           f"not measured: {args.ort_gpu_note}", ""]
    payload = {"measure": raw, "check": checked, "onnxruntime_gpu": args.ort_gpu_note}
    if args.gap:
        payload["gap"] = {**_load(args.gap, args.site), "note": args.gap_note}
    write_results(RESULT_NAME, payload, md)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    run = steps.add_parser("measure", help="on the GPU machine")
    run.add_argument("--models", type=Path, required=True, help="holds float32/ float16/ int8/ (model.tflite) "
                                                                "and onnx-fp32/model.onnx")
    run.add_argument("--photos", type=Path, required=True, help="labelled photos, one folder per class")
    run.add_argument("--vulkan-debs", type=Path, default=None, help="unpack these .debs into / first (root)")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--latency-budget-s", type=float, default=100)
    run.add_argument("--wheel", default="?", help="the edgekit wheel installed (recorded)")
    run.add_argument("--commit", default="?", help="the commit it was built from (recorded)")
    second = steps.add_parser("check", help="on the GPU machine: predict --json, time split, agreement")
    for name, kind in (("--models", Path), ("--photos", Path), ("--out", Path)):
        second.add_argument(name, type=kind, required=True)
    second.add_argument("--vulkan-debs", type=Path, default=None)
    second.add_argument("--wheel", default="?")
    second.add_argument("--commit", default="?")
    rep = steps.add_parser("report", help="here, from what came back")
    rep.add_argument("raw", type=Path, help="what `measure` wrote")
    rep.add_argument("check", type=Path, help="what `check` wrote")
    rep.add_argument("--site", default="/tmp/site", help="the install folder on the GPU machine (shown as $SITE)")
    rep.add_argument("--ort-gpu-note", required=True, help="why onnxruntime-gpu could not be carried")
    rep.add_argument("--gap", type=Path, default=None, help="what `gpu_gap.py measure` wrote (optional)")
    rep.add_argument("--gap-note", default="", help="what the variants show, in a sentence or two")
    args = parser.parse_args()
    return {"measure": measure, "check": check, "report": report}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
