"""What the accuracy guard saves per candidate by reusing one calibration: MobileNetV2 candidates (the first
1-3 depthwise layers kept float) converted with the calibrated, percentile-narrowed model that the plain int8
conversion made, against the same candidate from a model that calibrates on its own. Interleaved (A B A B) in one
reused converter child, 200 calibration images from train/ (compress's default sample, seed 0); records whether
the two candidates are byte-identical. Writes benchmarks/results/guard_calibration_reuse.json.

    python benchmarks/guard_calibration_reuse.py [--parent runs/bench-int8-accuracy/mobilenet_v2-160/float]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared")) / "datasets" / "clothing-small"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", type=Path, default=REPO / "runs" / "bench-int8-accuracy" / "mobilenet_v2-160" / "float")
    parser.add_argument("--candidates", type=int, default=3)
    args = parser.parse_args()
    from edgekit.artifacts import load_artifact, sha256_file, write_json_atomic
    from edgekit.child_process import reusing_children
    from edgekit.data import scan_image_folder
    from edgekit.keras_io import load_float_model
    from edgekit.machine import machine_record
    from edgekit.runtime.tflite_file import parse_tflite
    from edgekit.stages.compress import calibration_inputs
    from edgekit.targets.tflite_converter import PreparedModel

    parent = load_artifact(args.parent)
    inputs = calibration_inputs(scan_image_folder(DATA / "train"), parent.manifest.preprocessing_spec(), 200, 0)
    model = load_float_model(parent.path)
    load_before, rows = [round(value, 2) for value in os.getloadavg()], []
    with reusing_children():
        with PreparedModel(model, what="parent", representative=inputs, activation_ranges="percentile") as reusing:
            started = time.perf_counter()
            graph = parse_tflite(reusing.convert("int8")).main
            plain_s = time.perf_counter() - started
            depthwise = [graph.tensors[op.outputs[0]].name for op in graph.operators if op.op == "DEPTHWISE_CONV_2D"]
            for kept in range(1, args.candidates + 1):
                started = time.perf_counter()
                reused = reusing.convert("int8", denylisted_nodes=tuple(depthwise[:kept]))
                reused_s = time.perf_counter() - started
                with PreparedModel(model, what="parent", representative=inputs,
                                   activation_ranges="percentile") as calibrating:
                    started = time.perf_counter()
                    alone = calibrating.convert("int8", denylisted_nodes=tuple(depthwise[:kept]))
                    alone_s = time.perf_counter() - started
                rows.append({"kept_float": kept, "reused_calibration_s": round(reused_s, 2),
                             "own_calibration_s": round(alone_s, 2), "byte_identical": reused == alone})
                print(rows[-1], flush=True)
    write_json_atomic(REPO / "benchmarks" / "results" / "guard_calibration_reuse.json", {
        "parent": {"path": os.path.relpath(args.parent, REPO), "sha256": sha256_file(parent.path), "input_size": int(inputs.shape[1])},
        "calibration_images": int(len(inputs)), "activation_ranges": "percentile",
        "plain_int8_with_calibration_s": round(plain_s, 2), "candidates": rows,
        "machine": machine_record(), "load_average_before": load_before,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
