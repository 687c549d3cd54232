"""Where a GPU inference's time goes: edgekit's loop against LiteRT's own benchmark tool, one variant at a time.

On the lent H200 one float32 MobileNetV2 inference through edgekit took ~1.0 ms (0.11 ms input write, 0.94 ms
``run``, 0.23 ms read-back) while ``ai_edge_litert.tools.benchmark_litert_model`` reported 0.42 ms per run. The tool
writes its input once, then times ``run_by_name`` alone and never reads an output. Each variant below changes one
of those differences, so the numbers say which one holds the time:

- ``edgekit runner``: edgekit's profiler (``measure_local``: its runner in a fresh pinned process), the README row;
- ``edgekit backend``: ``LiteRTCompiledBackend.run`` on a fresh input each time (what ``predict`` does per photo);
  ``edgekit backend, batch of 8``: one call with 8 samples (and a check that it answers as 8 single calls do);
- ``write+run+read``: the same three LiteRT calls with each one timed;
- ``run``, ``run_by_name``: the tool's loop (input written once, no read), by index and by signature name;
  ``run_by_name, tool's set-up``: the same with the model and buffers made as the tool makes them;
- ``write+run``, ``run+read``: one of the two transfers left out;
- ``run x10+read``: ten runs back to back, then one read: if ``run`` returned before the GPU finished, the runs
  would overlap and the read would wait for all ten;
- ``run x100+read``: a hundred, as many as the tool times: per inference, the GPU's throughput when it never waits
  for the host;
- ``write+run+sleep+read``: 2 ms of sleep before the read: the read then finds the GPU done, so what is left of it
  is the copy, not a wait;
- ``... benchmark_mode`` / ``... hint_waiting``: LiteRT 2.3.0's two GPU options that touch execution
  (``GpuOptions(benchmark_mode=True)``, ``GpuOptions(hint_waiting_for_completion=True)``);
- ``litert tool``: the tool itself, as gpu_device.py ran it.

Every variant runs in its own fresh process pinned to one core (as edgekit's gpu profile runs), one unrecorded
warm-up round, then interleaved rounds; per process the p50 of the timed iterations after warm-up ones on
random inputs (8 of them, in turn); medians with min and max over rounds. Per iteration it also records each step's
time and the process's CPU time (a busy-waiting wait shows as CPU time equal to wall time).

On the GPU machine (edgekit and ai-edge-litert from wheels, the Vulkan loader unpacked as gpu_device.py does):
``python benchmarks/gpu_gap.py measure --model M.tflite --vulkan-debs DIR --out gap.json``. Here, with
``--hardware CPU``, the same script runs on the CPU (a dry run of every step but the GPU's numbers).
``python benchmarks/gpu_device.py report ... --gap gap.json`` puts the table into results/gpu_h200.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import environment, finish, run_process, spread  # noqa: E402

ITERATIONS, WARMUP, INPUTS, SLEEP_S, BATCH = 200, 20, 8, 0.002, 10
GROUP = 8  # samples per edgekit batch
LONG = 100  # runs queued before one read: as long as the tool's timed loop
MAX_ROUNDS, MIN_ROUNDS = 7, 3
# variant -> (LiteRT GPU option set, the steps of one timed iteration)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "edgekit backend": ("default", ("backend",)),
    f"edgekit backend, batch of {GROUP}": ("default", ("backend_batch",)),
    "write+run+read": ("default", ("write", "run", "read")),
    "run": ("default", ("run",)),
    "run_by_name": ("default", ("run_by_name",)),
    "run_by_name, tool's set-up": ("tool_setup", ("run_by_name",)),
    "write+run": ("default", ("write", "run")),
    "run+read": ("default", ("run", "read")),
    f"run x{BATCH}+read": ("default", ("run",) * BATCH + ("read",)),
    f"run x{LONG}+read": ("default", ("run",) * LONG + ("read",)),
    "write+run+sleep+read": ("default", ("write", "run", "sleep", "read")),
    "write+run+read benchmark_mode": ("benchmark_mode", ("write", "run", "read")),
    "write+run+read hint_waiting": ("hint_waiting", ("write", "run", "read")),
}
SPECIAL = ("edgekit runner", "litert tool")  # run by edgekit's profiler and by LiteRT's tool, not by `variant`


def compiled_model(data: bytes, hardware: str, option_set: str):
    """A CompiledModel as edgekit makes one (LiteRT's defaults, one CPU thread), with at most one GPU option on."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import CpuOptions, GpuOptions, Options

    gpu = {"default": GpuOptions(), "benchmark_mode": GpuOptions(benchmark_mode=True),
           "hint_waiting": GpuOptions(hint_waiting_for_completion=True)}[option_set]
    return CompiledModel.from_buffer(data, options=Options(hardware_accelerators=HardwareAccelerator[hardware],
                                                           cpu_options=CpuOptions(num_threads=1), gpu_options=gpu))


def tool_setup(path: Path, hardware: str):
    """The model and buffers made as LiteRT's tool makes them: ``from_file`` with an environment of default
    options, buffers created by signature and tensor name."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.environment import Environment, EnvironmentOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import CpuOptions, Options

    model = CompiledModel.from_file(str(path), environment=Environment.create(options=EnvironmentOptions()),
                                    options=Options(hardware_accelerators=HardwareAccelerator[hardware],
                                                    cpu_options=CpuOptions(num_threads=1)))
    signature = next(iter(model.get_signature_list()))
    names = model.get_signature_list()[signature]
    return (model, [model.create_input_buffer_by_name(signature, n) for n in names["inputs"]],
            [model.create_output_buffer_by_name(signature, n) for n in names["outputs"]])


def variant(args: argparse.Namespace) -> int:
    """One variant in this (fresh) process: build, warm up, time; print one JSON object."""
    import numpy as np

    from edgekit.runtime.backends import LiteRTCompiledBackend, silence_native_stderr, tflite_io_specs

    option_set, steps = VARIANTS[args.name]
    data = Path(args.model).read_bytes()
    spec_in, spec_out = tflite_io_specs(data)
    rng = np.random.default_rng(0)
    samples = [spec_in.quantize(rng.uniform(-1, 1, size=spec_in.shape).astype(np.float32)) for _ in range(INPUTS)]
    group = np.concatenate(samples[:GROUP])
    started = time.perf_counter()
    with silence_native_stderr(stdout=True):
        if steps in (("backend",), ("backend_batch",)):
            backend = LiteRTCompiledBackend(data, hardware=args.hardware)
            model, inputs, outputs = backend.model, backend._inputs, backend._results
        elif option_set == "tool_setup":
            model, inputs, outputs = tool_setup(args.model, args.hardware)
        else:
            model = compiled_model(data, args.hardware, option_set)
            inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
        init_ms = (time.perf_counter() - started) * 1000
        signature = next(iter(model.get_signature_list()))
        names = model.get_signature_list()[signature]
        by_name = ({n: b for n, b in zip(names["inputs"], inputs)}, {n: b for n, b in zip(names["outputs"], outputs)})
        count = int(np.prod(spec_out.shape))
        inputs[0].write(samples[0])  # the tool's loop writes its input once, before warm-up
        actions = {
            "backend": lambda sample: backend.run(sample),
            "backend_batch": lambda sample: backend.run(group),
            "write": lambda sample: inputs[0].write(sample),
            "run": lambda sample: model.run_by_index(0, inputs, outputs),
            "run_by_name": lambda sample: model.run_by_name(signature, *by_name),
            "read": lambda sample: outputs[0].read(count, spec_out.dtype),
            "sleep": lambda sample: time.sleep(SLEEP_S),
        }
        per_iteration = GROUP if steps == ("backend_batch",) else max(1, steps.count("run"))
        iterations, warmup = max(10, ITERATIONS // per_iteration), max(2, WARMUP // per_iteration)
        totals, per_step = [], {step: [] for step in steps}
        cpu_total = wall_total = 0.0
        for i in range(warmup + iterations):
            sample = samples[i % INPUTS]
            cpu0, t0 = time.process_time(), time.perf_counter()
            marks = [t0]
            for step in steps:
                actions[step](sample)
                marks.append(time.perf_counter())
            if i >= warmup:
                cpu_total += time.process_time() - cpu0
                wall_total += marks[-1] - t0
                totals.append((marks[-1] - t0) * 1000)
                for step, start, end in zip(steps, marks, marks[1:]):
                    per_step[step].append((end - start) * 1000)
        last = outputs[0].read(count, spec_out.dtype)
        if steps == ("backend_batch",):  # the queued batch must answer as one sample at a time does
            one_by_one = np.concatenate([backend.run(sample) for sample in samples[:GROUP]])
            batch_vs_single = float(np.abs(backend.run(group).astype(np.float64) - one_by_one).max())
    print(json.dumps({
        "variant": args.name, "option_set": option_set, "steps": list(steps), "iterations": iterations,
        "inferences_per_iteration": per_iteration,
        "batch_vs_single_max_diff": batch_vs_single if steps == ("backend_batch",) else None,
        "p50_ms": statistics.median(totals), "min_ms": min(totals), "max_ms": max(totals),
        "step_p50_ms": {step: statistics.median(values) for step, values in per_step.items()},
        "cpu_share": cpu_total / wall_total if wall_total else None, "init_ms": init_ms,
        "fully_accelerated": model.is_fully_accelerated(), "signature": signature,
        "buffer_requirements": {"input": model.get_input_buffer_requirements(0),
                                "output": model.get_output_buffer_requirements(0)},
        "output_finite": bool(np.isfinite(last.astype(np.float64)).all()),
    }))
    return 0


def litert_tool(model: Path, hardware: str, work: Path) -> dict:
    """LiteRT's tool as gpu_device.py runs it (GPU only), pinned to core 0: its median and min run."""
    from gpu_device import litert_tool_command

    out = work / "gap-tool.json"
    done = run_process(litert_tool_command(model, out, gpu=hardware == "GPU"), cores=[0], timeout_s=180)
    latency = json.loads(out.read_text())["latency"]
    return {"p50_ms": latency["median_ms"], "min_ms": latency["min_ms"], "max_ms": latency["max_ms"],
            "init_ms": latency["init_ms"], "cpu_share": None, "step_p50_ms": {"run_by_name": latency["median_ms"]},
            "wall_s": done["wall_s"]}


def edgekit_runner(model: Path, hardware: str) -> dict:
    """edgekit's profiler as `edgekit profile --device gpu` runs it (the README's row): 100 runs after 10."""
    from edgekit.runtime.latency import measure_local

    raw = measure_local(model, accelerator="gpu" if hardware == "GPU" else "cpu", threads=1, runs=100, warmup=10)
    return {"p50_ms": raw["stats"]["p50_ms"], "min_ms": raw["stats"]["min_ms"], "max_ms": raw["stats"]["max_ms"],
            "init_ms": raw["init_ms"], "cpu_share": raw["cpu_stats"]["p50_ms"] / raw["stats"]["p50_ms"],
            "step_p50_ms": {}, "backend": raw["backend"]}


def one_case(name: str, model: Path, hardware: str, work: Path) -> dict:
    if name == "litert tool":
        return litert_tool(model, hardware, work)
    if name == "edgekit runner":
        return edgekit_runner(model, hardware)
    done = run_process([sys.executable, str(Path(__file__).resolve()), "variant", name, "--model", str(model),
                        "--hardware", hardware], cores=[0], timeout_s=180)
    return done["reported"]


def summarize(rows: dict[str, list[dict]]) -> dict:
    """Per variant: spreads over rounds of p50, of each step's p50 and of the CPU share; the first round's details."""
    summary = {}
    for name, own in rows.items():
        if not own:
            continue
        steps = {step for row in own for step in row["step_p50_ms"]}
        summary[name] = {"p50_ms": spread([r["p50_ms"] for r in own]), "min_ms": min(r["min_ms"] for r in own),
                         "round_p50_ms": [r["p50_ms"] for r in own],
                         "step_p50_ms": {s: spread([r["step_p50_ms"][s] for r in own]) for s in sorted(steps)},
                         "init_ms": spread([r["init_ms"] for r in own]),
                         "cpu_share": (spread([r["cpu_share"] for r in own])
                                       if all(r.get("cpu_share") is not None for r in own) else None),
                         "details": {k: v for k, v in own[0].items() if k in ("steps", "iterations", "option_set",
                                     "fully_accelerated", "buffer_requirements", "output_finite", "backend",
                                     "inferences_per_iteration", "batch_vs_single_max_diff")}}
    return summary


def measure(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out = Path(args.out)
    if args.vulkan_debs:
        from gpu_device import set_up_vulkan  # the same loader set-up as the first measurements

        set_up_vulkan(args.vulkan_debs)
    names = [*SPECIAL, *VARIANTS]
    result: dict = {"environment": environment(cores=[0]), "model": str(args.model), "hardware": args.hardware,
                    "wheel": args.wheel, "commit": args.commit, "cwd": str(Path.cwd()),
                    "method": f"one fresh process per variant and round, pinned to core 0; per process the p50 of "
                              f"{ITERATIONS} timed inferences after {WARMUP}, in iterations of one inference (of {BATCH} "
                              f"or {LONG} for run xN+read, of {GROUP} for the batch; at least 10 timed and 2 warm-up "
                              f"iterations), on {INPUTS} random inputs in turn; one unrecorded "
                              f"warm-up round, then interleaved rounds; medians with min and max over rounds. "
                              f"edgekit runner: edgekit's profiler, 100 runs after 10; litert tool: "
                              f"benchmark_litert_model --use_gpu --no_cpu, 100 runs after 10",
                    "failed": {}}

    def save() -> None:
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        out.write_text(json.dumps(result, indent=1, default=str))

    for name in list(names):  # warm-up round: a variant that fails is recorded and left out
        try:
            one_case(name, args.model, args.hardware, out.parent)
        except (RuntimeError, OSError, KeyError, ValueError) as exc:
            result["failed"][name] = str(exc)[-400:]
            names.remove(name)
    per_round = max(time.monotonic() - started, 1e-3)
    rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, (args.budget_s - per_round) // per_round)))
    result.update(rounds=rounds, warmup_round_s=round(per_round, 1))
    save()
    print(f"[{per_round:.0f} s] warm-up round; {rounds} rounds; failed: {list(result['failed'])}", file=sys.stderr,
          flush=True)
    rows: dict[str, list[dict]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names:
            try:
                rows[name].append(one_case(name, args.model, args.hardware, out.parent))
            except (RuntimeError, OSError, KeyError, ValueError) as exc:
                result["failed"][f"{name} (round {index + 1})"] = str(exc)[-400:]
        result["variants"] = summarize(rows)
        result["rounds_done"] = index + 1
        save()
        print(f"[{time.monotonic() - started:.0f} s] round {index + 1}/{rounds}: "
              + ", ".join(f"{n} {rows[n][-1]['p50_ms']:.3f}" for n in names if rows[n]), file=sys.stderr, flush=True)
    tool_json = out.parent / "gap-tool.json"
    if tool_json.is_file():
        result["litert_tool_last_round"] = json.loads(tool_json.read_text())
    result["environment"] = finish(result["environment"])
    save()
    print(table(result), flush=True)
    return 0


def table(gap: dict) -> str:
    """The variants as a Markdown table (also printed last on the GPU machine)."""
    lines = ["| variant | p50 ms per iteration, median [min-max] over rounds | per inference | write | run | read | "
             "CPU share |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in gap.get("variants", {}).items():
        steps = row["step_p50_ms"]
        run = steps.get("run") or steps.get("run_by_name")
        cells = [f"{steps[s]['median']:.3f}" if s in steps else "-" for s in ("write",)]
        cells += [f"{run['median']:.3f}" if run else "-", f"{steps['read']['median']:.3f}" if "read" in steps else "-"]
        share = f"{row['cpu_share']['median']:.2f}" if row.get("cpu_share") else "-"
        p50, runs = row["p50_ms"], (row["details"].get("inferences_per_iteration")
                                         or max(1, row["details"].get("steps", []).count("run")))
        lines.append(f"| {name} | {p50['median']:.3f} [{p50['min']:.3f}-{p50['max']:.3f}] | "
                     f"{p50['median'] / runs:.3f} | {' | '.join(cells)} | "
                     f"{share} |")
    lines += [f"| {name} | failed: {error.splitlines()[-1] if error else ''} | | | | | |"
              for name, error in gap.get("failed", {}).items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    run = steps.add_parser("measure", help="every variant, interleaved rounds (on the GPU machine)")
    run.add_argument("--model", type=Path, required=True, help="a .tflite model (float32 MobileNetV2 on the H200)")
    run.add_argument("--out", type=Path, required=True, help="the JSON written after every round")
    run.add_argument("--vulkan-debs", type=Path, default=None, help="unpack these .debs into / first (root)")
    run.add_argument("--hardware", default="GPU", choices=("GPU", "CPU"), help="CPU: a dry run of every step here")
    run.add_argument("--budget-s", type=float, default=150, help="rounds: as many as fit (3 to 7)")
    run.add_argument("--wheel", default="?", help="the edgekit wheel installed (recorded)")
    run.add_argument("--commit", default="?", help="the commit it was built from (recorded)")
    child = steps.add_parser("variant", help="one variant in this process (measure starts these)")
    child.add_argument("name", choices=list(VARIANTS))
    child.add_argument("--model", type=Path, required=True)
    child.add_argument("--hardware", default="GPU", choices=("GPU", "CPU"))
    args = parser.parse_args()
    return {"measure": measure, "variant": variant}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
