"""Where int16x8's time goes: per-op CPU time of compress_variants' float32, int8 and int16x8 MobileNetV2 (160 px).

ai-edge-litert exposes no per-op profiler to Python (edgekit's profile says so for .tflite), so each operator
is cut out into a one-op model (the model's tensors and weights, only that op using them; kernels and XNNPACK
as LiteRT picks them) and timed alone: 1 thread, pinned, the calling thread's CPU time per invoke (other
people's load does not inflate it), median over interleaved rounds. The whole model is timed the same way, so
the sum of its ops shows what cutting it up leaves out. Writes benchmarks/results/op_times.{json,md}.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, float_parent_and_test_inputs  # noqa: E402
from compress_variants import SIZE, build_variants  # noqa: E402
from harness import environment, environment_lines, finish, pinned_cores, write_results  # noqa: E402

MODELS, ROUNDS, INVOKES, TOP = ("float32", "int8", "int16x8"), 5, 10, 6


def one_op_models(data: bytes) -> list[tuple[str, bytes]]:
    """(op type, .tflite bytes) for every operator of subgraph 0, each alone with the model's other tensors
    unused (LiteRT allocates only the tensors a node or the graph's inputs/outputs name)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(data)
    graph, buffers = model.subgraphs[0], model.buffers
    operators, cut = list(graph.operators), []
    model.signatureDefs = []
    for op in operators:
        graph.operators = [op]
        graph.inputs = [i for i in op.inputs if i >= 0 and buffers[graph.tensors[i].buffer].data is None]
        graph.outputs = list(op.outputs)
        cut.append((flatbuffer_utils.opcode_to_name(model, op.opcodeIndex),
                    bytes(flatbuffer_utils.convert_object_to_bytearray(model))))
    return cut


def cpu_ms_per_invoke(data: bytes) -> float:
    """Median thread CPU ms of INVOKES invokes after 2 warm-up ones, zero-filled inputs, 1 thread."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    times = []
    for index in range(INVOKES + 2):
        started = time.thread_time_ns()
        interpreter.invoke()
        if index >= 2:
            times.append((time.thread_time_ns() - started) / 1e6)
    return statistics.median(times)


def main() -> int:
    parent, _, _ = float_parent_and_test_inputs(None, input_size=SIZE)
    built = build_variants(parent, WORK / f"compress-{SIZE}")
    whole = {name: built[name]["path"].read_bytes() for name in MODELS}
    cuts = {name: one_op_models(whole[name]) for name in MODELS}
    cores = pinned_cores(1)
    os.sched_setaffinity(0, cores)
    setting = environment(cores=cores, rounds=ROUNDS)
    per_op = {name: [[] for _ in cuts[name]] for name in MODELS}
    whole_ms = {name: [] for name in MODELS}
    for round_index in range(ROUNDS):  # every model once per round, so load bursts hit all alike
        for name in MODELS:
            whole_ms[name].append(cpu_ms_per_invoke(whole[name]))
            for times, (_, data) in zip(per_op[name], cuts[name]):
                times.append(cpu_ms_per_invoke(data))
        print(f"round {round_index + 1}/{ROUNDS}: " + ", ".join(f"{n} {whole_ms[n][-1]:.2f} ms" for n in MODELS),
              file=sys.stderr, flush=True)
    setting = finish(setting)
    rows = {}
    for name in MODELS:
        by_type: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "ops": 0})
        for (kind, _), times in zip(cuts[name], per_op[name]):
            by_type[kind]["ms"] += statistics.median(times)
            by_type[kind]["ops"] += 1
        rows[name] = {"whole_model_cpu_ms": statistics.median(whole_ms[name]),
                      "sum_of_ops_cpu_ms": sum(entry["ms"] for entry in by_type.values()),
                      "by_op_type": dict(sorted(by_type.items(), key=lambda item: -item[1]["ms"]))}
    payload = {"benchmark": "op_times", "environment": setting, "backbone": parent.manifest.backbone,
               "input_size": SIZE, "threads": 1, "rounds": ROUNDS, "invokes_per_measurement": INVOKES, "models": rows}
    kinds = list(rows["int16x8"]["by_op_type"])[:TOP]
    lines = [f"# Per-op CPU time: {parent.manifest.backbone} {SIZE} px, float32 vs int8 vs int16x8 TFLite", "",
             "Each op cut out into a one-op model and timed alone (1 thread, pinned, thread CPU ms per invoke, median "
             f"of {INVOKES} invokes, median over {ROUNDS} interleaved rounds); summed per op type. The whole model "
             "is timed the same way.", "",
             "| op type (count) | " + " | ".join(f"{n} ms (share)" for n in MODELS) + " |",
             "|---|" + "---:|" * len(MODELS)]
    for kind in kinds:
        count = rows["int16x8"]["by_op_type"][kind]["ops"]
        cells = []
        for name in MODELS:
            entry = rows[name]["by_op_type"].get(kind)
            cells.append(f"{entry['ms']:.2f} ({entry['ms'] / rows[name]['sum_of_ops_cpu_ms']:.0%})" if entry else "-")
        lines.append(f"| {kind} ({count}) | " + " | ".join(cells) + " |")
    lines += ["| sum of all ops | " + " | ".join(f"{rows[n]['sum_of_ops_cpu_ms']:.2f}" for n in MODELS) + " |",
              "| whole model | " + " | ".join(f"{rows[n]['whole_model_cpu_ms']:.2f}" for n in MODELS) + " |",
              *environment_lines(setting)]
    write_results("op_times", payload, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
