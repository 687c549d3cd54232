"""The accuracy guard's MobileNetV2 224 candidates, with and without bias correction, on the guard's own splits.

Rebuilds exactly what `compress --int8 --max-accuracy-drop 1.5 --eval-data <pool>` sees (seed 0: 200
calibration images from train/, the 2,440-photo pool of benchmarks/int8_accuracy.py split 976 tuning /
1,464 certification) and scores two candidates of its search, the first 32 and 16 layers of its ranking
kept float (the ranking recorded by the guarded run of int8_accuracy.py), each as converted and after
`correct_int8_biases` on the calibration images: tuning drop and its upper bound widened for the guard's
15 looks, certification drop with its interval and one-sided 95% upper bound, size vs float32 TFLite.
Writes benchmarks/results/guard_candidates.json. Needs the int8_accuracy.py work folder (float parent,
pool, guarded run); about 25 min on 2 loaded cores.

    python benchmarks/guard_candidates.py [--work runs/bench-int8-accuracy]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEPT_FLOAT = (32, 16)
BOUND, LOOKS = 1.5, 15


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-int8-accuracy")
    args = parser.parse_args()
    import numpy as np

    from edgekit._tf import set_seed
    from edgekit.artifacts import load_artifact, write_json_atomic
    from edgekit.child_process import reusing_children
    from edgekit.keras_io import load_float_model
    from edgekit.metrics import accuracy_change, drop_upper_bound
    from edgekit.options import CompressOptions
    from edgekit.stages.bias_correction import correct_int8_biases
    from edgekit.stages.compress import _calibration_and_eval, _tuning_and_certification, plan_compression
    from edgekit.targets.tflite_converter import PreparedModel, run_tflite

    root = args.work / "mobilenet_v2-224"
    guard = json.loads((root / "guarded" / "int8" / "manifest.json").read_text())["extra"]["accuracy_guard"]
    ranking = guard["kept_float_layers"]  # the guard's ranking, as far as that run kept layers float
    parent = load_artifact(root / "float")
    plan = plan_compression(model=parent.path, out_dir=args.work / "guard-candidates",
                            options=CompressOptions(int8=True, max_accuracy_drop=BOUND, bias_correction=True),
                            calibration=None, train_data=None, eval_data=args.work / "pool")
    set_seed(0)
    calibration, scored = _calibration_and_eval(plan)
    tuning, certification = _tuning_and_certification(scored, BOUND, 0)
    model = load_float_model(parent.path)
    references = {id(split): np.asarray(model.predict(split.inputs, batch_size=32, verbose=0))
                  for split in (tuning, certification)}
    started, rows = time.perf_counter(), {}
    with reusing_children(), PreparedModel(model, what=str(parent.path), representative=calibration) as prepared:
        float32 = prepared.convert("float32")
        for kept in KEPT_FLOAT:
            candidate = prepared.convert("int8", denylisted_nodes=tuple(ranking[:kept]))
            corrected, report = correct_int8_biases(candidate, float32, calibration)
            row = {"size_vs_float32_tflite": round(len(candidate) / len(float32), 4),
                   "layers_corrected": report["layers_corrected"]}
            for name, data in (("uncorrected", candidate), ("corrected", corrected)):
                found = {}
                for what, split in (("tuning", tuning), ("certification", certification)):
                    found[what] = accuracy_change(split.labels, references[id(split)], run_tflite(data, split.inputs),
                                                  parent.manifest.labels)
                tune, cert = found["tuning"], found["certification"]
                row[name] = {"tuning_images": tune["images"], "tuning_drop": tune["drop_points"],
                             "tuning_upper_over_looks": drop_upper_bound(tune["only_parent_right"],
                                                                         tune["only_model_right"], tune["images"],
                                                                         looks=LOOKS),
                             "tuning_agreement": tune["top1_agreement"], "cert_images": cert["images"],
                             "cert_drop": cert["drop_points"], "cert_interval95": cert["interval95_points"],
                             "cert_upper95": cert["upper95_points"], "cert_agreement": cert["top1_agreement"]}
                print(kept, name, json.dumps(row[name]), flush=True)
            rows[str(kept)] = row
    write_json_atomic(REPO / "benchmarks" / "results" / "guard_candidates.json", {
        "bound_points": BOUND, "looks": LOOKS, "kept_float_first_of_ranking": rows,
        "wall_s": round(time.perf_counter() - started, 1), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
