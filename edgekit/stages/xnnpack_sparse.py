"""Does XNNPACK run a pruned float model with its sparse kernels here, and if not, why not?

XNNPACK (the CPU engine of LiteRT) computes 1x1 convolutions as sparse-matrix products only when
all of these hold (its README, "Sparse inference", and ``xnn_subgraph_rewrite_for_nchw``):

- the .tflite stores the pruned weights sparse (converter ``Optimize.EXPERIMENTAL_SPARSITY``: a
  DENSIFY op feeds each such CONV_2D); only then does the delegate pass the sparse-inference hint;
- the graph is one run of NCHW-capable ops: it starts with a 3x3 stride-2 CONV_2D on 3 channels
  with padding 1, holds only 1x1 convolutions, 3x3/5x5 depthwise convolutions with padding 1/2,
  adds, multiplies and clamps/ReLUs, and ends with a spatial MEAN; tfmot's
  ``PruneForLatencyOnXNNPack`` policy checks this on the Keras graph;
- at least 2/3 of the 1x1-convolution weights are zero (below that XNNPACK keeps it dense);
- the CPU is ARM (or x86 *without* AVX): on x86 CPUs with AVX XNNPACK turns its sparse (CHW)
  kernels off because it expects dense to be faster there (``xnn_is_chw_compatible_config``).

XNNPACK logs none of this, so the check also measures a latency signature: the sparse file against
its dense twin in interleaved rounds, each measurement in a fresh process pinned to one core.
Sparse kernels that run show up as a speed-up; on this project's x86 AVX machines the two files run
at the same speed.
"""

from __future__ import annotations

import platform
from pathlib import Path

from edgekit.options import MIN_SPARSE_ZERO_FRACTION

SIGNATURE_SPEEDUP = 1.1  # dense/sparse p50 above this counts as sparse kernels running
SIGNATURE_ROUNDS = 3
SIGNATURE_RUNS = 20
X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def policy_violation(model) -> str | None:
    """The XNNPACK sparse-pattern rule ``model`` (tf_keras) breaks, per tfmot's ``PruneForLatencyOnXNNPack``;
    None when it follows the pattern."""
    from edgekit._tf import import_tfmot

    policy = import_tfmot().sparsity.keras.PruneForLatencyOnXNNPack()
    try:
        policy.ensure_model_supports_pruning(model)
    except ValueError as exc:
        return str(exc).splitlines()[0]
    return None


def cpu_sparse_support(machine: str | None = None, flags: set[str] | None = None) -> tuple[bool, str]:
    """(XNNPACK would use its sparse fp32 kernels on this CPU, why)."""
    machine = (machine or platform.machine()).lower()
    if machine not in X86:
        return True, f"{machine}: XNNPACK has sparse fp32 (and on ARMv8.2+ fp16) kernels for this CPU"
    if flags is None:
        from edgekit.machine import cpu_flags

        flags = cpu_flags()
    if "avx" in flags:
        return False, ("this x86 CPU has AVX, and XNNPACK switches its sparse kernels off on such CPUs "
                       "(dense is expected to be faster there; xnn_is_chw_compatible_config)")
    return True, "x86 without AVX: XNNPACK's SSE sparse kernels apply"


def densified_convolutions(data: bytes) -> dict:
    """How many 1x1 CONV_2D ops of a .tflite take their filter from a DENSIFY op (sparse-stored weights)."""
    from edgekit.runtime.tflite_file import parse_tflite

    graph = parse_tflite(data).main
    densify_outputs = {op.outputs[0] for op in graph.operators if op.op == "DENSIFY"}
    pointwise = [op for op in graph.operators if op.op == "CONV_2D"
                 and graph.tensors[op.inputs[1]].shape[1:3] == (1, 1)]
    sparse = sum(1 for op in pointwise if op.inputs[1] in densify_outputs)
    return {"densify_ops": len(densify_outputs), "conv1x1": len(pointwise), "conv1x1_sparse_stored": sparse}


def latency_signature(sparse: bytes, dense: bytes, *, rounds: int = SIGNATURE_ROUNDS,
                      runs: int = SIGNATURE_RUNS) -> dict:
    """Dense p50 / sparse p50 on one pinned thread, interleaved rounds of fresh processes (median, min, max of
    the per-round ratios)."""
    import tempfile

    from edgekit.runtime.latency import interleaved_rounds, measure_local, ratios_to_first

    with tempfile.TemporaryDirectory(prefix="edgekit-sparse-timing-") as folder:
        files = [Path(folder) / "sparse.tflite", Path(folder) / "dense.tflite"]
        for file, data in zip(files, (sparse, dense)):
            file.write_bytes(data)
        sparse_ms, dense_ms = interleaved_rounds(
            files, lambda file: measure_local(file, accelerator="cpu", threads=1, runs=runs, warmup=3)["stats"]["p50_ms"],
            rounds=rounds)
    speedup = ratios_to_first([sparse_ms, dense_ms])[1]
    return {"speedup": round(speedup["ratio"], 3), "min": round(speedup["min"], 3),
            "max": round(speedup["max"], 3), "sparse_p50_ms": [round(v, 3) for v in sparse_ms],
            "dense_p50_ms": [round(v, 3) for v in dense_ms],
            "method": f"{rounds} interleaved rounds, fresh process per model, 1 pinned thread, p50 of {runs} runs"}


def check_sparse_inference(sparse: bytes, dense: bytes, *, zero_fraction: float, rule_broken: str | None,
                           measure: bool = True) -> dict:
    """Whether XNNPACK runs ``sparse`` with sparse kernels on this machine, with every reason it does not.

    ``dense`` is the same network stored dense; ``zero_fraction`` the share of zero 1x1-conv weights;
    ``rule_broken`` what :func:`policy_violation` said about the Keras model.
    """
    reasons = []
    stored = densified_convolutions(sparse)
    if stored["conv1x1_sparse_stored"] == 0:
        reasons.append("the converter stored no 1x1 convolution sparse (no DENSIFY ops)")
    if rule_broken:
        reasons.append(f"the graph breaks XNNPACK's sparse pattern: {rule_broken}")
    if zero_fraction < MIN_SPARSE_ZERO_FRACTION:
        reasons.append(f"only {zero_fraction:.0%} of the 1x1-convolution weights are zero; XNNPACK needs "
                       f"{MIN_SPARSE_ZERO_FRACTION:.0%}")
    cpu_ok, cpu_reason = cpu_sparse_support()
    if not cpu_ok:
        reasons.append(cpu_reason)
    result: dict = {"expected": not reasons, "cpu": platform.machine(), "cpu_reason": cpu_reason,
                    "stored": stored, "zero_fraction_1x1": round(zero_fraction, 4), "rule_broken": rule_broken}
    if measure:
        result["latency"] = signature = latency_signature(sparse, dense)
        sped_up = signature["speedup"] >= SIGNATURE_SPEEDUP
        # The signature confirms a prediction; it cannot overrule one: where XNNPACK's own code keeps the sparse
        # kernels off (AVX, dense storage), a faster sparse file is timing noise, and is recorded as such.
        result["used"] = sped_up and not reasons
        if sped_up and reasons:
            signature["note"] = (f"x{signature['speedup']:.2f} measured although sparse kernels cannot run here: "
                                 "timing noise, not sparse inference")
        if not sped_up and not reasons:
            reasons.append(f"no speed-up measured (x{signature['speedup']:.2f} < x{SIGNATURE_SPEEDUP}) although the "
                           "graph and CPU qualify")
    else:
        result["used"] = None
    result["why_not"] = [] if result["used"] else reasons
    return result


def describe(check: dict) -> str:
    """One terminal line: used or not, the speed-up measured, and why not."""
    speed = f" (dense/sparse latency x{check['latency']['speedup']:.2f})" if "latency" in check else ""
    if check["used"]:
        return f"sparse kernels run{speed}"
    verdict = "sparse kernels not used" if check["used"] is False else "sparse kernels not expected"
    return f"{verdict}{speed}: " + "; ".join(check["why_not"])
