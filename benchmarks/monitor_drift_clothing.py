"""Drift detection on real photos: does `edgekit monitor` stay quiet on unseen photos and flag real shifts?

Model: MobileNetV2 finetuned on clothing-small train/ (80/20 seeded split), compressed to int8 TFLite;
its reference profile is the one finetune/compress write (input statistics of the 800 training
photos, scores of the int8 model on the 200 held-out ones). The device log is written by the real
runtime (`Predictor(..., log=...)`) on photos the reference never saw: test/ + extra/.

- Unshifted: 20 random class-balanced subsets of 200 unseen photos (20 per class; the reference
  mix is balanced, and a different class mix is itself a monitored shift). False-alarm rate = share
  of subsets with any drifted signal. For contrast, 20 plain random subsets of test/ (its mix is
  imbalanced, skirt 12 ... shoes 73) are reported too.
- Shifted, on one balanced subset: brightness halved, Gaussian blur radius 3, JPEG re-encoded at
  quality 10 (brightness and blur applied to the decoded photo handed to the runtime; the JPEG
  written to a file the runtime reads, as a camera would), and a class mix with no t-shirts and
  three times as many shorts (unshifted photos).

Run: python benchmarks/monitor_drift_clothing.py [--model INT8_DIR] [--size 160]
(writes benchmarks/results/monitor_drift_clothing.{json,md} and the report of the brightness shift)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "clothing-small"
PER_CLASS = 20  # a balanced subset of 200 photos over 10 classes
POOL_CAP = 60  # logged unseen photos per class (enough for 3x shorts)
SUBSETS = 20
EXPECTED = {"brightness_halved": "brightness", "blur_radius_3": "sharpness", "jpeg_quality_10": "jpeg_quality",
            "class_mix_no_tshirt_3x_shorts": "predicted_class"}


def build_model(work: Path, data: Path, size: int) -> Path:
    """Finetune (head only) + int8 compress; both stages write their reference profiles."""
    from edgekit.stages.compress import compress
    from edgekit.stages.finetune import FinetuneConfig, finetune

    float_dir = work / "float"
    if not (float_dir / "manifest.json").is_file():
        finetune(data=data / "train", out_dir=float_dir,
                 config=FinetuneConfig(backbone="mobilenet_v2", input_size=size, epochs=15, augment_copies=0, seed=0))
    int8_dir = work / "compressed" / "int8"
    if not (int8_dir / "reference_profile.json").is_file():
        compress(model=float_dir, out_dir=work / "compressed", int8=True, eval_data=data / "test")
    return int8_dir


def unseen_pool(data: Path, labels: list[str], seed: int) -> dict[str, list[Path]]:
    """Up to POOL_CAP photos per class from test/ + extra/ (never used for training or the reference)."""
    rng = np.random.default_rng(seed)
    pool = {}
    for label in labels:
        paths = sorted(p for split in ("test", "extra") for p in (data / split / label).iterdir() if p.is_file())
        pool[label] = [paths[i] for i in np.sort(rng.permutation(len(paths))[:POOL_CAP])]
    return pool


def shifted(path: Path, shift: str, work: Path):
    """The photo with one shift applied: a decoded PIL image, or for JPEG a re-encoded file (as a camera writes it)."""
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    if shift == "brightness_halved":
        return ImageEnhance.Brightness(image).enhance(0.5)
    if shift == "blur_radius_3":
        return image.filter(ImageFilter.GaussianBlur(3))
    out = work / "jpeg10" / f"{path.parent.name}-{path.name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="JPEG", quality=10)
    return out


def select(rows: dict, keep: np.ndarray) -> dict:
    return {k: (v[keep] if isinstance(v, np.ndarray) else [x for x, m in zip(v, keep) if m]) for k, v in rows.items()}


def rows_for(rows: dict, paths: list[Path]) -> dict:
    """The logged rows of these photos, in this order (repeats allowed)."""
    where = {source: i for i, source in enumerate(rows["source"])}
    order = np.array([where[str(p)] for p in paths])
    return {k: (v[order] if isinstance(v, np.ndarray) else [v[i] for i in order]) for k, v in rows.items()}


def run(model_dir: Path, data: Path, work: Path, *, seed: int = 0) -> dict:
    from edgekit.monitoring import load_reference_profile, monitor
    from edgekit.monitoring.drift import analyze
    from edgekit.runtime import Predictor
    from edgekit.runtime.predlog import read_log

    profile = load_reference_profile(model_dir)
    labels = profile["labels"]
    pool = unseen_pool(data, labels, seed)
    log = work / "unseen.sqlite"
    if not log.is_file():
        predictor = Predictor(model_dir, threads=1, log=log)
        for paths in pool.values():
            for path in paths:
                predictor.predict(path)
        predictor.log.close()
    rows = read_log(log)
    rng = np.random.default_rng(seed + 1)

    def balanced(counts: dict[str, int]) -> list[Path]:
        return [pool[label][i] for label, n in counts.items() for i in rng.permutation(len(pool[label]))[:n]]

    subsets = []
    for _ in range(SUBSETS):
        verdict = analyze(rows_for(rows, balanced({label: PER_CLASS for label in labels})), profile)
        subsets.append(verdict["summary"]["drifted_signals"])
    test_paths = sorted(p for p in (data / "test").rglob("*") if p.is_file())
    test_log = work / "test.sqlite"
    if not test_log.is_file():
        predictor = Predictor(model_dir, threads=1, log=test_log)
        for path in test_paths:
            predictor.predict(path)
        predictor.log.close()
    test_rows = read_log(test_log)
    plain = [analyze(rows_for(test_rows, [test_paths[i] for i in rng.permutation(len(test_paths))[:200]]),
                     profile)["summary"]["drifted_signals"] for _ in range(SUBSETS)]

    base = balanced({label: PER_CLASS for label in labels})
    shifts = {}
    for shift in ("brightness_halved", "blur_radius_3", "jpeg_quality_10"):
        shift_log = work / f"{shift}.sqlite"
        if not shift_log.is_file():
            predictor = Predictor(model_dir, threads=1, log=shift_log)
            for path in base:
                predictor.predict(shifted(path, shift, work))
            predictor.log.close()
        shifts[shift] = monitor(log=shift_log, model=model_dir, out_dir=work / f"report-{shift}")
    mix = {label: (0 if label == "t-shirt" else 3 * PER_CLASS if label == "shorts" else PER_CLASS) for label in labels}
    shifts["class_mix_no_tshirt_3x_shorts"] = analyze(rows_for(rows, balanced(mix)), profile)
    return {
        "model": str(model_dir), "reference": {"input_images": profile["input"]["images"],
                                               "heldout_images": profile["scores"]["images"]},
        "thresholds": shifts["brightness_halved"]["thresholds"],
        "unshifted_balanced": {"subsets": SUBSETS, "size": PER_CLASS * len(labels),
                               "false_alarms": sum(bool(s) for s in subsets), "drifted_signals": subsets},
        "unshifted_plain_test": {"subsets": SUBSETS, "size": 200, "false_alarms": sum(bool(s) for s in plain),
                                 "drifted_signals": plain},
        "shifts": {name: {"expected": EXPECTED[name], "drifted_signals": r["summary"]["drifted_signals"],
                          "flagged": EXPECTED[name] in r["summary"]["drifted_signals"],
                          "features": {k: {m: f[m] for m in ("psi", "pvalue", "reference_mean", "current_mean")}
                                       for k, f in r["features"].items()},
                          "class_pvalue": r["prediction"]["predicted_class"]["pvalue"],
                          "mean_confidence": r["prediction"]["mean_confidence"]}
                   for name, r in shifts.items()},
        "report_of_brightness_shift": shifts["brightness_halved"]["report"],
    }


def markdown(result: dict, seconds: float) -> str:
    balanced, plain = result["unshifted_balanced"], result["unshifted_plain_test"]
    lines = ["# Drift detection on clothing-small (edgekit monitor)", "",
             f"Model `{result['model']}`; reference: input statistics of {result['reference']['input_images']} "
             f"training photos, int8 scores on {result['reference']['heldout_images']} held-out photos. "
             f"Thresholds: {', '.join(f'{k}={v:g}' for k, v in result['thresholds'].items())}. "
             f"Run time {seconds:.0f} s on a shared 2-core machine.", "",
             "## False alarms on unshifted, unseen photos", "",
             "| subsets | photos each | drawn from | false alarms | signals in false alarms |", "|---|---|---|---|---|",
             f"| {balanced['subsets']} | {balanced['size']} | test/ + extra/, 20 per class | "
             f"{balanced['false_alarms']} / {balanced['subsets']} | "
             f"{', '.join(sorted({s for row in balanced['drifted_signals'] for s in row})) or 'none'} |",
             f"| {plain['subsets']} | {plain['size']} | test/ at random (imbalanced mix) | "
             f"{plain['false_alarms']} / {plain['subsets']} | "
             f"{', '.join(sorted({s for row in plain['drifted_signals'] for s in row})) or 'none'} |", "",
             "## Shifts (200 unseen photos each)", "",
             "| shift | expected signal | flagged | drifted signals | mean confidence | class p |", "|---|---|---|---|---|---|"]
    for name, shift in result["shifts"].items():
        lines.append(f"| {name} | {shift['expected']} | {'yes' if shift['flagged'] else 'NO'} | "
                     f"{', '.join(shift['drifted_signals']) or 'none'} | {shift['mean_confidence']:.3f} | "
                     f"{shift['class_pvalue']:.2g} |")
    lines += ["", "Per-feature PSI (reference mean -> logged mean):", "",
              "| shift | " + " | ".join(next(iter(result["shifts"].values()))["features"]) + " |",
              "|---|" + "---|" * len(next(iter(result["shifts"].values()))["features"])]
    for name, shift in result["shifts"].items():
        lines.append(f"| {name} | " + " | ".join(f"{f['psi']:.2f}" for f in shift["features"].values()) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from edgekit.artifacts import write_json_atomic, write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an int8 artifact folder with its reference profile")
    parser.add_argument("--size", type=int, default=160, help="input size when the model is built here")
    parser.add_argument("--work", type=Path, help="keep the logs and reports here (default: a temp folder)")
    args = parser.parse_args()
    if not (DATA / "train").is_dir():
        sys.exit(f"clothing-small not found at {DATA}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = args.model or build_model(work, DATA, args.size)
        result = run(model, DATA, work)
        seconds = time.perf_counter() - started
        write_json_atomic(RESULTS / "monitor_drift_clothing.json", result | {"seconds": round(seconds, 1)})
        write_text_atomic(RESULTS / "monitor_drift_clothing.md", markdown(result, seconds))
    print(json.dumps({k: result[k] for k in ("unshifted_balanced", "unshifted_plain_test")}, indent=1))
    print({name: shift["drifted_signals"] for name, shift in result["shifts"].items()})


if __name__ == "__main__":
    main()
