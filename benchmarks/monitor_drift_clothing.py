"""Drift detection on real photos: does `edgekit monitor` stay quiet on unseen photos and flag real shifts?

Model: MobileNetV2 finetuned on clothing-small train/ (80/20 seeded split), compressed to int8 TFLite;
its reference profile is the one finetune/compress write (input statistics of the 800 training
photos, scores of the int8 model on the 200 held-out ones). The device log is written by the real
runtime (`Predictor(..., log=...)`) on photos the reference never saw: test/ + extra/.

- Unshifted: 20 random subsets of 200 unseen photos from extra/ (the rest of the original training
  split, so the same collection as train/), drawn class by class up to 20 per class (extra/ has
  only 12 skirts and 23 hats; the remaining places are filled at random), because the reference mix
  is balanced and a different class mix is itself a monitored shift. False-alarm rate = share of
  subsets with any drifted signal. For contrast, 20 plain random subsets of extra/ (t-shirts 34%)
  and of test/ (the original test split: other photo sizes, lower saturation) are reported too.
- Shifted, on one balanced subset: brightness halved, Gaussian blur radius 3, JPEG re-encoded at
  quality 10 (brightness and blur applied to the decoded photo handed to the runtime; the JPEG
  written to a file the runtime reads, as a camera would), and a class mix with no t-shirts and
  three times as many shorts (unshifted photos).

Run: python benchmarks/monitor_drift_clothing.py [--model INT8_DIR] [--size 224]
(writes benchmarks/results/monitor_drift_clothing.{json,md} and the report of the brightness shift)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import RESULTS, REPO, relative  # noqa: E402

WORK = REPO / "runs" / "bench" / "monitor-drift"  # the model, logs and reports (kept: reruns reuse them)
DATA = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared")) / "datasets" / "clothing-small"
PER_CLASS = 20  # photos per class in an unshifted subset (fewer where extra/ has fewer)
SUBSET = 200
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
    """Up to POOL_CAP photos per class from extra/ (never used for training or the reference)."""
    rng = np.random.default_rng(seed)
    pool = {}
    for label in labels:
        paths = sorted(p for p in (data / "extra" / label).iterdir() if p.is_file())
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
    reused = log.is_file()  # --work kept from an earlier run: its logs are analysed again, not rewritten
    if not log.is_file():
        predictor = Predictor(model_dir, threads=1, log=log)
        for paths in pool.values():
            for path in paths:
                predictor.predict(path)
        predictor.log.close()
    rows = read_log(log)
    rng = np.random.default_rng(seed + 1)

    def balanced(counts: dict[str, int], total: int | None = None) -> list[Path]:
        """``counts`` photos per class (or all the class has), topped up at random to ``total``."""
        chosen = [pool[label][i] for label, n in counts.items() for i in rng.permutation(len(pool[label]))[:n]]
        rest = sorted(set(p for paths in pool.values() for p in paths) - set(chosen))
        return chosen + [rest[i] for i in rng.permutation(len(rest))[:max(0, (total or 0) - len(chosen))]]

    def signals(paths: list[Path], source: dict) -> list[str]:
        return analyze(rows_for(source, paths), profile)["summary"]["drifted_signals"]

    even = {label: PER_CLASS for label in labels}
    subsets = [signals(balanced(even, SUBSET), rows) for _ in range(SUBSETS)]
    extra_paths = sorted(p for p in (data / "extra").rglob("*") if p.is_file())
    test_paths = sorted(p for p in (data / "test").rglob("*") if p.is_file())
    contrast = {}
    for name, paths in (("extra", extra_paths), ("test", test_paths)):
        contrast_log = work / f"{name}-all.sqlite"
        if not contrast_log.is_file():
            predictor = Predictor(model_dir, threads=1, log=contrast_log)
            for path in paths:
                predictor.predict(path)
            predictor.log.close()
        logged = read_log(contrast_log)
        contrast[name] = [signals([paths[i] for i in rng.permutation(len(paths))[:SUBSET]], logged)
                          for _ in range(SUBSETS)]

    base = balanced(even, SUBSET)
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
        "logs_reused": reused, "model": relative(model_dir), "reference": {"input_images": profile["input"]["images"],
                                               "heldout_images": profile["scores"]["images"]},
        "thresholds": shifts["brightness_halved"]["thresholds"],
        "unshifted_balanced": {"subsets": SUBSETS, "size": SUBSET, "false_alarms": sum(bool(s) for s in subsets),
                               "drifted_signals": subsets},
        **{f"random_{name}": {"subsets": SUBSETS, "size": SUBSET, "alarms": sum(bool(s) for s in found),
                              "drifted_signals": found} for name, found in contrast.items()},
        "shifts": {name: {"expected": EXPECTED[name], "drifted_signals": r["summary"]["drifted_signals"],
                          "flagged": EXPECTED[name] in r["summary"]["drifted_signals"],
                          "features": {k: {m: f[m] for m in ("psi", "pvalue", "reference_mean", "current_mean")}
                                       for k, f in r["features"].items()},
                          "class_pvalue": r["prediction"]["predicted_class"]["pvalue"],
                          "mean_confidence": r["prediction"]["mean_confidence"]}
                   for name, r in shifts.items()},
        "report_of_brightness_shift": {kind: relative(path) for kind, path in shifts["brightness_halved"]["report"].items()},
    }


def markdown(result: dict, seconds: float) -> str:
    balanced = result["unshifted_balanced"]

    def found(block: dict) -> str:
        return ", ".join(sorted({s for row in block["drifted_signals"] for s in row})) or "none"

    lines = ["# Drift detection on clothing-small (edgekit monitor)", "",
             f"Model `{result['model']}`; reference: input statistics of {result['reference']['input_images']} "
             f"training photos, int8 scores on {result['reference']['heldout_images']} held-out photos. "
             f"Thresholds: {', '.join(f'{k}={v:g}' for k, v in result['thresholds'].items())}. "
             f"Run time {seconds:.0f} s on a shared 2-core machine"
             + (" (analysis only: the logs of an earlier run in the same --work folder were reused)." if result["logs_reused"]
                else " (logging every photo through the runtime included)."), "",
             "## Unshifted photos the reference never saw", "",
             "| subsets of 200 | drawn from | subsets with drift | signals flagged |", "|---|---|---|---|",
             f"| {balanced['subsets']} | extra/, up to 20 per class (the reference's mix) | "
             f"{balanced['false_alarms']} / {balanced['subsets']} (false alarms) | {found(balanced)} |",
             f"| {result['random_extra']['subsets']} | extra/ at random (t-shirts 34%: a real class-mix shift) | "
             f"{result['random_extra']['alarms']} / {result['random_extra']['subsets']} | {found(result['random_extra'])} |",
             f"| {result['random_test']['subsets']} | test/ at random (another collection: sizes, colour, mix) | "
             f"{result['random_test']['alarms']} / {result['random_test']['subsets']} | {found(result['random_test'])} |",
             "",
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
    parser.add_argument("--size", type=int, default=224, help="input size when the model is built here")
    parser.add_argument("--work", type=Path, default=WORK, help="keep the model, logs and reports here")
    args = parser.parse_args()
    if not (DATA / "train").is_dir():
        sys.exit(f"clothing-small not found at {DATA}")
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model or build_model(args.work, DATA, args.size)
    result = run(model, DATA, args.work)
    seconds = time.perf_counter() - started
    write_json_atomic(RESULTS / "monitor_drift_clothing.json", result | {"seconds": round(seconds, 1)})
    write_text_atomic(RESULTS / "monitor_drift_clothing.md", markdown(result, seconds))
    print(json.dumps({k: result[k]["drifted_signals"] for k in ("unshifted_balanced", "random_extra", "random_test")}))
    print({name: shift["drifted_signals"] for name, shift in result["shifts"].items()})


if __name__ == "__main__":
    main()
