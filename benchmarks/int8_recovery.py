"""Where MobileNetV2's int8 loss comes from, and what each recovery method buys on its own.

Same float parent as benchmarks/int8_accuracy.py (mobilenet_v2 at 224 px, finetuned at defaults on
clothing-small train/), same 2,440-photo pool (test/ + extra/, never used in training). Every variant
is converted from that parent and scored against it on the whole pool with
edgekit.metrics.accuracy_change (positive drop = loss, paired 95% interval, top-1 agreement), and its
size is compared with the parent's float32 .tflite:

- locate: the TFLite quantization debugger's per-layer error (RMSE / scale of each op's output,
  64 calibration images) summarised per kind of layer, and the pool drop when one kind of layer
  is kept float (selective int8), which says how much of the loss that kind carries;
- recovery, each method alone against plain int8 (200 calibration images, seed 0): 100 / 300 /
  1,000 calibration images, 1,000 + 1,000 augmented (flip/crop/brightness) calibration images,
  empirical bias correction (edgekit compress --bias-correction), whole-model int16x8 (slow reference
  kernels: --int16x8-every N scores every N-th photo);
- combined (--part combine): recoveries that cost ~no size, together: the residual adds kept float with bias
  correction after them, and the depthwise convs with the residual adds kept float, without and with it;
- cross-layer equalization (edgekit compress --equalize): the float change it makes (ReLU6 -> ReLU),
  int8 of the equalized model alone and with bias correction;
- QAT against extra training (--part qat): the parent fine-tuned for E epochs with QAT (as `compress
  --qat` does it) and, separately, for the same E epochs in float (same data, seed, optimizer, learning
  rate, frozen BatchNorm) followed by plain int8, so that the gain QAT shows is not just more training.
- QAT distilled from the parent (--part qat-distill; `compress --qat --qat-distill`): the same QAT, trained on
  the parent's softened outputs instead of the labels, scored against the parent and, paired, against the
  label QAT and float fine-tune arms above.

Writes benchmarks/results/int8_recovery.{json,md}; each variant's result is cached under
--work/recovery/ so an interrupted run resumes.

    python benchmarks/int8_recovery.py [--backbone mobilenet_v2 --size 224]
    python benchmarks/int8_recovery.py --part equalize     # only those rows; then --cached-only writes the files
    python benchmarks/int8_recovery.py --part locate --part recover   # two parts in one process
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from contextlib import ExitStack
from functools import cached_property
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_accuracy import DATA, REPO, _load, linked_pool  # noqa: E402

CALIBRATION_SEED = 0
EARLIER_PARENT_RESULTS = "int8_recovery_epyc.md"  # this benchmark's results on the parent before session 27's
KEPT_FLOAT_GROUPS = {  # kind of layer -> test on the debugger's tensor name; the likeliest culprits first
    "stem conv (first layer, quantized input)": lambda name: "/stem_" in name,
    "softmax output (quantized probabilities)": lambda name: name.startswith("StatefulPartitionedCall"),
    "classifier (logits)": lambda name: "edgekit_head_dense" in name,
    "depthwise convs": lambda name: "_dw_bn" in name,
    "project convs (linear bottlenecks)": lambda name: "_project_bn" in name,
    "expand convs": lambda name: "_expand_bn" in name,
    "head conv + pool": lambda name: "/head_bn" in name or "avg_pool" in name,
    "residual adds": lambda name: name.endswith("_add/add"),
}


class Workbench:
    """The parent, its float32 .tflite, the train/ images and the scored pool (loaded on first use), loaded once."""

    def __init__(self, parent_dir: Path, data: Path, pool: Path):
        from edgekit.artifacts import load_artifact
        from edgekit.data import scan_image_folder
        from edgekit.keras_io import load_float_model

        self.parent = load_artifact(parent_dir)
        self.labels = self.parent.manifest.labels
        self.preprocessing = self.parent.manifest.preprocessing_spec()
        self.train = scan_image_folder(data / "train", classes=self.labels)
        self.pool = pool
        self.model = load_float_model(self.parent.path)

    @cached_property
    def _pool(self) -> tuple[np.ndarray, np.ndarray]:
        from edgekit.data import load_folder_arrays, normalize, scan_image_folder

        pixels, truth = load_folder_arrays(scan_image_folder(self.pool, classes=self.labels), self.preprocessing)
        return normalize(pixels, self.preprocessing), truth

    @property
    def pool_inputs(self) -> np.ndarray:
        return self._pool[0]

    @property
    def truth(self) -> np.ndarray:
        return self._pool[1]

    @cached_property
    def reference(self) -> np.ndarray:
        """The parent's outputs on the pool."""
        return np.asarray(self.model.predict(self.pool_inputs, batch_size=32, verbose=0))

    def calibration(self, count: int, *, augmented_copies: int = 0) -> np.ndarray:
        """``count`` class-stratified train/ images (seeded as compress does), plus augmented copies of them."""
        from edgekit.data import Augmentation, calibration_sample, load_folder_arrays, normalize

        pixels, _ = load_folder_arrays(calibration_sample(self.train, count, seed=CALIBRATION_SEED), self.preprocessing)
        rng = np.random.default_rng(CALIBRATION_SEED)
        pixels = np.concatenate([pixels] + [Augmentation().apply(pixels, rng) for _ in range(augmented_copies)])
        return normalize(pixels, self.preprocessing)

    def score(self, model_bytes: bytes, float32_bytes: int, every: int = 1) -> dict:
        """Drop against the parent on the pool, or on every ``every``-th photo of it (classes in proportion)."""
        from edgekit.metrics import accuracy_change
        from edgekit.targets.tflite_converter import run_tflite

        chosen = slice(None, None, every)
        started = time.perf_counter()
        outputs = run_tflite(model_bytes, self.pool_inputs[chosen])
        inference_s = time.perf_counter() - started
        change = accuracy_change(self.truth[chosen], self.reference[chosen], outputs, self.labels)
        keep = ("images", "parent_top1", "top1", "drop_points", "interval95_points", "upper95_points",
                "top1_agreement", "worst_class_recall_drop", "macro_f1_drop_points")
        return {key: change[key] for key in keep} | {
            "bytes": len(model_bytes), "size_vs_float32_tflite": round(len(model_bytes) / float32_bytes, 4),
            "inference_ms_per_image": round(1000 * inference_s / len(outputs), 1)}


class Tools:
    """What the measurements need, built on first use (a run from the cache alone builds nothing)."""

    def __init__(self, root: Path, data: Path, pool: Path, stack: ExitStack):
        self.root, self.data, self.pool, self.stack = root, data, pool, stack

    @cached_property
    def bench(self) -> Workbench:
        return Workbench(self.root / "float", self.data, self.pool)

    @cached_property
    def prepared(self):
        from edgekit.targets.tflite_converter import PreparedModel

        return self.stack.enter_context(PreparedModel(self.bench.model, what=str(self.root),
                                                      representative=self.bench.calibration(200)))

    @cached_property
    def float32(self) -> bytes:
        return self.prepared.convert("float32")

    def score(self, model_bytes: bytes, every: int = 1) -> dict:
        return self.bench.score(model_bytes, len(self.float32), every)

    def int8(self, kept_float: tuple[str, ...] = (), *, bias_correction: bool = False) -> dict:
        """Int8 of the parent (200 calibration images) with the tensors named in ``kept_float`` left in float32,
        then, when asked, empirical bias correction against the float32 .tflite; scored on the pool."""
        data = self.prepared.convert("int8", denylisted_nodes=tuple(kept_float))
        if not bias_correction:
            return self.score(data)
        data, record = _bias_corrected(data, self.float32, self.bench.calibration(200))
        return self.score(data) | record

    def converted(self, mode: str, calibration: np.ndarray | None, model=None) -> bytes:
        """``mode`` conversion of ``model`` (default: the parent) calibrated on ``calibration``."""
        from edgekit.targets.tflite_converter import PreparedModel

        with PreparedModel(self.bench.model if model is None else model, what=str(self.root),
                           representative=calibration) as prepared:
            return prepared.convert(mode)

    @cached_property
    def equalized(self) -> tuple[object, dict]:
        """The parent after cross-layer equalization (ReLU6 between equalized layers made ReLU), and its report."""
        from edgekit.stages.equalization import equalize

        return equalize(self.bench.model)


def _bias_corrected(int8_bytes: bytes, float32_bytes: bytes, calibration: np.ndarray) -> tuple[bytes, dict]:
    """``int8_bytes`` after empirical bias correction against ``float32_bytes``, and its record (no per-layer rows)."""
    from edgekit.stages.bias_correction import correct_int8_biases

    data, report = correct_int8_biases(int8_bytes, float32_bytes, calibration)
    return data, {"bias_correction": {key: value for key, value in report.items() if key != "per_layer"}}


def float_parent(root: Path, cache: Path) -> dict:
    """The float parent under ``root`` (sha256, validation top-1, where it was finetuned), stamped into ``cache`` on
    first use; a cache stamped for another parent is refused, since its rows would mix parents in one table."""
    from edgekit.artifacts import load_artifact, write_json_atomic

    manifest = load_artifact(root / "float").manifest
    parent = {"sha256": manifest.sha256, "validation_top1": manifest.metrics.get("validation", {}).get("accuracy"),
              "finetuned": manifest.created, "machine": manifest.machine or None}
    stamp = cache / "parent.json"
    if not stamp.is_file():
        write_json_atomic(stamp, parent)
    stamped = json.loads(stamp.read_text())
    if stamped["sha256"] != parent["sha256"]:
        sys.exit(f"{stamp}: the results cached there are of float parent {stamped['sha256'][:12]}, not "
                 f"{parent['sha256'][:12]} (now in {root / 'float'}): move {cache} away to measure this parent")
    return parent


def _cached(path: Path, compute, cached_only: bool) -> dict | None:
    """The result stored at ``path``; else computed and stored (None when only the cache may be read)."""
    from edgekit.artifacts import write_json_atomic

    if path.is_file():
        return json.loads(path.read_text())
    if cached_only:
        return None
    started = time.perf_counter()
    result = compute() | {"wall_s": round(time.perf_counter() - started, 1), "load": _load()}
    write_json_atomic(path, result)
    print(json.dumps({path.stem: {k: result.get(k) for k in ("drop_points", "top1_agreement")}}), flush=True)
    return result


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.split(" (")[0].replace(",", ""))


def _debugger_layers(tools: Tools, cache: Path, cached_only: bool) -> list[dict] | None:
    """The quantization debugger's per-op rows (64 calibration images), worst first; cached."""
    found = _cached(cache / "debugger.json", lambda: {"layers": tools.prepared.layer_stats()}, cached_only)
    return None if found is None else found["layers"]


def _kept_float_names(stats: list[dict], kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The debugger's tensor names of every layer of the given KEPT_FLOAT_GROUPS kinds."""
    return tuple(row["tensor_name"] for row in stats
                 if any(KEPT_FLOAT_GROUPS[kind](row["tensor_name"]) for kind in kinds))


def locate(tools: Tools, cache: Path, cached_only: bool, kinds_to_measure: list[str] | None = None) -> dict | None:
    """Per-layer debugger error by kind of layer, and the pool drop with each kind kept float."""
    stats = _debugger_layers(tools, cache, cached_only)
    if stats is None:
        return None
    kinds = {}
    for kind, member in KEPT_FLOAT_GROUPS.items():
        names = _kept_float_names(stats, (kind,))
        errors = [row["rmse_over_scale"] for row in stats if member(row["tensor_name"])]
        kept = _cached(cache / f"kept-float-{_slug(kind)}.json", lambda names=names: tools.int8(names),
                       cached_only or (kinds_to_measure is not None and kind not in kinds_to_measure))
        kinds[kind] = {"layers": len(names), "mean_rmse_over_scale": round(float(np.mean(errors)), 4),
                       "max_rmse_over_scale": round(float(np.max(errors)), 4), "kept_float": kept}
    return {"debugger_images": 64, "by_kind": kinds, "worst_layers": [
        {"tensor_name": row["tensor_name"], "rmse_over_scale": round(row["rmse_over_scale"], 4)} for row in stats[:10]]}


def recover(tools: Tools, cache: Path, cached_only: bool, measure: list[str] | None = None) -> dict:
    """Each recovery method on its own, against plain int8 (200 calibration images); None where not measured."""
    def calibrated(count: int, mode: str = "int8", augmented_copies: int = 0):
        return lambda: tools.score(tools.converted(mode, tools.bench.calibration(count,
                                                                                 augmented_copies=augmented_copies)))

    methods = {
        "int8, 200 calibration images (plain)": calibrated(200),
        "int8, 100 calibration images": calibrated(100),
        "int8, 300 calibration images": calibrated(300),
        "int8, all 1,000 train images": calibrated(1000),
        "int8, 1,000 + 1,000 augmented images": calibrated(1000, augmented_copies=1),
        "int8 + bias correction (200 images; 64 for the correction)": lambda: tools.int8(bias_correction=True),
    }
    return {name: _cached(cache / f"method-{_slug(name)}.json", compute, cached_only or not _chosen(name, measure))
            for name, compute in methods.items()}


def _chosen(name: str, words: list[str] | None) -> bool:
    """Whether the row ``name`` is to be measured: every row when no --method words were given."""
    return words is None or any(word in name for word in words)


COMBINED = {  # recoveries that cost ~no size, together: kinds kept float (adds have no weights, depthwise
    # weights are small), and whether bias correction follows (the slow part: one int8 run per corrected layer)
    "depthwise convs + residual adds float": (("depthwise convs", "residual adds"), False),
    "residual adds float + bias correction": (("residual adds",), True),
    "depthwise convs + residual adds float + bias correction": (("depthwise convs", "residual adds"), True),
}


def combine(tools: Tools, cache: Path, cached_only: bool, measure: list[str] | None = None) -> dict:
    """The COMBINED recoveries, each scored on the pool against the parent; None where not measured."""
    stats = _debugger_layers(tools, cache, cached_only)
    return {name: None if stats is None else _cached(
                cache / f"combined-{_slug(name)}.json",
                lambda kinds=kinds, corrected=corrected: tools.int8(_kept_float_names(stats, kinds),
                                                                    bias_correction=corrected),
                cached_only or not _chosen(name, measure))
            for name, (kinds, corrected) in COMBINED.items()}


def equalization(tools: Tools, cache: Path, cached_only: bool) -> dict:
    """Cross-layer equalization (compress --equalize): its change to the float model (ReLU6 -> ReLU), then int8
    of the equalized model alone and with bias correction, all scored against the original parent."""
    def report() -> dict:
        return {key: value for key, value in tools.equalized[1].items() if key != "per_pair"}

    def float32() -> dict:
        return tools.score(tools.converted("float32", None, tools.equalized[0])) | {"equalization": report()}

    def int8(bias_correction: bool):
        def measure() -> dict:
            calibration = tools.bench.calibration(200)
            data = tools.converted("int8", calibration, tools.equalized[0])
            found = {"equalization": report()}
            if bias_correction:
                data, record = _bias_corrected(data, tools.converted("float32", None, tools.equalized[0]), calibration)
                found |= record
            return tools.score(data) | found
        return measure

    def grid_use() -> dict:
        return activation_grid_use(tools.bench.model, tools.equalized[0], tools.bench.calibration(16))

    found = _cached(cache / "equalized-activation-grid-use.json", grid_use, cached_only)
    methods = {
        "float32, equalized (CLE's ReLU6 -> ReLU; no quantization)": float32,
        "int8 + cross-layer equalization (200 images)": int8(False),
        "int8 + cross-layer equalization + bias correction": int8(True),
    }
    return {"rows": {name: _cached(cache / f"equalized-{_slug(name)}.json", compute, cached_only)
                     for name, compute in methods.items()}, "activation_grid_use": found}


def activation_grid_use(parent, equalized, images: np.ndarray) -> dict:
    """Why CLE can hurt with per-channel weights: for each activation between equalized layers (quantized per
    tensor), the median channel's range as a share of the tensor's range (the int8 grid it gets), before and after."""
    from edgekit._tf import import_tf
    from edgekit.stages.equalization import find_pairs

    _, tf_keras = import_tf()
    names = [relu or norm for _, norm, _, relu in find_pairs(parent)]

    def shares(model) -> np.ndarray:
        outputs = tf_keras.Model(model.input, [model.get_layer(name).output for name in names]).predict(images, verbose=0)
        ranges = [np.abs(out).reshape(-1, out.shape[-1]).max(0) for out in outputs]
        return np.array([np.median(r / r.max()) for r in ranges])

    before, after = shares(parent), shares(equalized)
    return {"images": len(images), "tensors": len(names), "median_share_before": round(float(np.median(before)), 3),
            "median_share_after": round(float(np.median(after)), 3), "tensors_worse": int((after < before).sum())}


def int16x8(tools: Tools, cache: Path, cached_only: bool, every: int) -> dict:
    """Whole-model int16x8 (int16 activations, int8 weights; 200 calibration images). Its reference kernels
    are slow, so it may be scored on every ``every``-th pool photo (the row says how many), next to plain
    int8 on the same photos (a paired comparison)."""
    def measure(mode: str, nth: int):
        return lambda: tools.score(tools.converted(mode, tools.bench.calibration(200)), nth) | {"every_nth_photo": nth}

    # the caches hold one subset each (the first measured sets it): delete them to measure another
    found = _cached(cache / "int16x8.json", measure("int16x8", every), cached_only)
    every = found["every_nth_photo"] if found else every
    rows = {"int16x8 (whole model), 200 images": found}
    if every > 1:
        rows["int8 (plain), on the same photos as int16x8"] = _cached(
            cache / "int8-on-the-int16x8-photos.json", measure("int8", every), cached_only)
    return rows


ARMS = ("qat", "float")  # QAT fine-tune, or the same fine-tune in float (then plain int8)
DISTILLED = "qat-distilled"  # QAT on the parent's softened outputs (compress --qat --qat-distill), no labels
CALIBRATED = "qat-distilled-calibrated-ranges"  # the same, activation ranges started from calibration images
# Sessions 23-24 measured the other QAT arms from tfmot's starting ranges; retrained, they start there again.


def _fine_tuned_outputs(tools: Tools, arm: str, epochs: int) -> dict:
    """A fresh copy of the parent fine-tuned ``epochs`` on train/ (QAT or float, as ``arm`` says), converted to
    int8 (200 calibration images, as plain int8), with its pool outputs: the int8 model's, and for the
    float arm also the fine-tuned float model's.

    It trains before the pool is loaded: both at once did not fit beside the other jobs in this machine's
    23 GB (the QAT arm was killed for memory when both arms ran in parallel with the pool loaded).
    """
    from edgekit.artifacts import load_artifact
    from edgekit.keras_io import load_float_model
    from edgekit.stages.quantize import LEARNING_RATE, qat_model
    from edgekit.stages.tfmot_wrappers import fine_tune, freeze_batchnorm, load_training_images
    from edgekit.targets.tflite_converter import PreparedModel, run_tflite

    parent = load_artifact(tools.root / "float")
    images = load_training_images(tools.data / "train", parent.manifest.labels, parent.manifest.preprocessing_spec())
    model = load_float_model(parent.path)
    started = time.perf_counter()
    distillation = None
    ranges = None
    if arm in ("qat", DISTILLED, CALIBRATED):
        calibration = tools.bench.calibration(200) if arm == CALIBRATED else None
        model, report = qat_model(model, images, calibration=calibration, epochs=epochs, seed=CALIBRATION_SEED,
                                  distill=arm != "qat", tfmot_wrap=parent.manifest.tfmot_wrap or "whole")
        history, distillation, ranges = report["fine_tune"], report["distillation"], report["activation_ranges"]
    else:  # what qat_model does, without the fake quantization
        freeze_batchnorm(model)
        history = fine_tune(model, images, epochs=epochs, learning_rate=LEARNING_RATE, seed=CALIBRATION_SEED,
                            description="float fine-tune")
    train_s = time.perf_counter() - started
    del images
    bench = tools.bench
    with PreparedModel(model, what=f"{arm} fine-tune", representative=bench.calibration(200)) as prepared:
        int8 = prepared.convert("int8")
    outputs = {"truth": bench.truth, "parent": bench.reference, "int8": run_tflite(int8, bench.pool_inputs)}
    if arm == "float":
        outputs["float"] = np.asarray(model.predict(bench.pool_inputs, batch_size=32, verbose=0))
    return {"outputs": outputs, "labels": bench.labels, "history": history, "train_s": round(train_s, 1),
            "learning_rate": LEARNING_RATE, "distillation": distillation, "activation_ranges": ranges,
            "int8_bytes": len(int8),
            "int8_size_vs_float32_tflite": round(len(int8) / len(tools.float32), 4)}


def _fine_tuned_arm(tools: Tools, cache: Path, arm: str, epochs: int, train: bool) -> dict | None:
    """One arm's cached result with its pool outputs; trained and cached first when ``train`` and not cached."""
    from edgekit.artifacts import write_json_atomic

    stem = cache / f"fine-tune-{arm}-{epochs}-epochs"
    if not stem.with_suffix(".json").is_file() and train:
        result = _fine_tuned_outputs(tools, arm, epochs) | {"load": _load()}
        np.savez(stem.with_suffix(".npz"), **result.pop("outputs"))
        write_json_atomic(stem.with_suffix(".json"), result)
    if not stem.with_suffix(".json").is_file():
        return None
    return json.loads(stem.with_suffix(".json").read_text()) | {"outputs": dict(np.load(stem.with_suffix(".npz")))}


def qat_against_extra_training(tools: Tools, cache: Path, epochs: int, arms: tuple[str, ...]) -> dict | None:
    """QAT int8 against the parent fine-tuned in float for the same epochs and then quantized plainly.

    Each arm (in ``arms``: trained now unless cached; others read from the cache) stores its pool outputs
    in ``cache``; the comparisons are paired on the same 2,440 photos. None until both arms exist.
    """
    from edgekit.metrics import accuracy_change

    found = {arm: row for arm in ARMS if (row := _fine_tuned_arm(tools, cache, arm, epochs, arm in arms))}
    if set(found) != set(ARMS):
        return None
    qat, extra = found["qat"]["outputs"], found["float"]["outputs"]
    truth, labels = qat["truth"], found["qat"]["labels"]

    def change(before, after) -> dict:
        keep = ("images", "parent_top1", "top1", "drop_points", "interval95_points", "top1_agreement")
        return {key: value for key, value in accuracy_change(truth, before, after, labels).items() if key in keep}

    return {"epochs": epochs, "comparisons": {
                "float fine-tuned (no quantization) vs parent": change(qat["parent"], extra["float"]),
                "float fine-tuned, plain int8 vs parent": change(qat["parent"], extra["int8"]),
                "float fine-tuned, plain int8 vs float fine-tuned": change(extra["float"], extra["int8"]),
                "QAT int8 vs parent": change(qat["parent"], qat["int8"]),
                "QAT int8 vs float fine-tuned": change(extra["float"], qat["int8"]),
                "QAT int8 vs float fine-tuned, plain int8": change(extra["int8"], qat["int8"])},
            "arms": {arm: {key: value for key, value in row.items() if key != "outputs"}
                     for arm, row in found.items()}}


def _plain_int8_outputs(tools: Tools, cache: Path, compute: bool) -> np.ndarray | None:
    """Plain int8 of the parent (200 calibration images) on the pool, cached: the control for distilled QAT.

    Fine-tuning the parent in float on its own softened outputs starts at the loss's minimum (student = teacher),
    so it barely moves the weights; what that arm would quantize is the parent itself.
    """
    from edgekit.targets.tflite_converter import run_tflite

    path = cache / "plain-int8-outputs.npz"
    if not path.is_file() and compute:
        np.savez(path, int8=run_tflite(tools.converted("int8", tools.bench.calibration(200)), tools.bench.pool_inputs))
    return dict(np.load(path))["int8"] if path.is_file() else None


def distilled_qat(tools: Tools, cache: Path, arm: str, epochs: int, label_epochs: int, *, train: bool) -> dict | None:
    """QAT on the parent's softened outputs (``epochs``; ``arm`` says how its ranges start), scored against the
    parent and, paired on the same photos, against the label arms of :func:`qat_against_extra_training`
    (``label_epochs``) and, for calibrated ranges, the 1-epoch arm from tfmot's start, where cached."""
    from edgekit.metrics import accuracy_change

    distilled = _fine_tuned_arm(tools, cache, arm, epochs, train)
    plain = _plain_int8_outputs(tools, cache, train)
    if distilled is None:
        return None
    outputs, labels = distilled["outputs"], distilled["labels"]
    keep = ("images", "parent_top1", "top1", "drop_points", "interval95_points", "top1_agreement")

    def change(before) -> dict:
        found = accuracy_change(outputs["truth"], before, outputs["int8"], labels)
        return {key: value for key, value in found.items() if key in keep}

    comparisons = {"parent": change(outputs["parent"])}
    if plain is not None:  # the same training in float would not move the weights (see _plain_int8_outputs)
        comparisons["plain int8 of the parent"] = change(plain)
    against = {("qat", label_epochs): "QAT int8 on labels", ("float", label_epochs): "float fine-tuned, plain int8"}
    if arm == CALIBRATED:
        against[(DISTILLED, 1)] = "distilled QAT int8 from tfmot's [-6, 6] ranges"
    for (other, other_epochs), name in against.items():
        found = _fine_tuned_arm(tools, cache, other, other_epochs, False)
        if found is not None:
            comparisons[f"{name} ({other_epochs} epoch{'s' if other_epochs != 1 else ''})"] = change(
                found["outputs"]["int8"])
    return {"epochs": epochs, "label_epochs": label_epochs, "comparisons": comparisons, "arm_name": arm,
            "arm": {key: value for key, value in distilled.items() if key != "outputs"}}


def _mixed_int16x8_evidence() -> str:
    """Why sensitive layers cannot be int16x8 inside an int8 model: the converter's quantizer entry point."""
    from tensorflow.lite.python import convert as tflite_convert

    return f"tensorflow.lite.python.convert.mlir_quantize{inspect.signature(tflite_convert.mlir_quantize)}"


def _row(name: str, result: dict) -> str:
    low, high = result["interval95_points"]
    return (f"| {name} | {result['images']} | {result['drop_points']:+.2f} ({low:+.2f} to {high:+.2f}) | "
            f"{result['top1_agreement']:.3f} | {result['size_vs_float32_tflite']:.3f}x |")


def _equalization_markdown(equalized: dict, header: list[str]) -> list[str]:
    measured = {name: row for name, row in equalized["rows"].items() if row is not None}
    if not measured:
        return []
    report, use = next(iter(measured.values()))["equalization"], equalized["activation_grid_use"]
    return ["", "## Cross-layer equalization (`compress --equalize`)", "",
            f"{report['pairs']} pairs of consecutive convolutions (conv -> BN -> ReLU -> conv, including the linear "
            "project -> expand links) rescaled per channel until their weight ranges (BatchNorm folded) match: "
            f"median per-pair channel range ratio {report['median_channel_range_ratio_before']} -> "
            f"{report['median_channel_range_ratio_after']} ({report['sweeps']} sweeps). As AIMET does, the "
            f"{report['relu6_made_relu']} ReLU6 between equalized layers become ReLU (ReLU6 is not scale-equivariant); "
            "the first row is that change alone, in float. Every row is scored against the original parent.", ""
            ] + header + [_row(name, row) for name, row in measured.items()] + ([] if use is None else [
        "", f"Activations stay per-tensor int8 while weights are per-channel, so equalizing weight ranges buys the "
        f"weights nothing and moves the spread into the activations: over the {use['tensors']} activations between "
        f"equalized layers ({use['images']} calibration images), the median channel's range is "
        f"{use['median_share_before']:.2f} of its tensor's range before CLE and {use['median_share_after']:.2f} "
        f"after (worse in {use['tensors_worse']} of {use['tensors']}): fewer int8 steps per channel."])


def _qat_markdown(qat: dict | None) -> list[str]:
    """The QAT section: each comparison, paired on the pool, and what each fine-tune cost."""
    if qat is None:
        return []
    epochs = f"{qat['epochs']} epoch{'s' if qat['epochs'] != 1 else ''}"
    lines = ["", f"## QAT against the same {epochs} of float fine-tuning", "",
             f"Both start from the parent and fine-tune all layers on train/ for {epochs} with the "
             f"same seed, Adam at {qat['arms']['qat']['learning_rate']:g} and BatchNorm frozen, as `compress --qat` "
             "does; one with tfmot's fake quantization (then converted to int8), one in float (then plain int8, "
             "200 calibration images). Drop = top-1 of the model it is against minus its own (positive = a loss).", "",
             "| model | against | n | drop (95% CI) | agreement |", "|---|---|---:|---|---:|"]
    for name, row in qat["comparisons"].items():
        model, against = name.split(" vs ")
        low, high = row["interval95_points"]
        lines.append(f"| {model} | {against} | {row['images']} | {row['drop_points']:+.2f} ({low:+.2f} to "
                     f"{high:+.2f}) | {row['top1_agreement']:.3f} |")
    lines += ["", "| fine-tune | train time | last-epoch train accuracy | int8 size vs fp32 TFLite | load |",
              "|---|---:|---:|---:|---|"]
    for arm, row in qat["arms"].items():
        lines.append(f"| {'QAT' if arm == 'qat' else 'float'} | {row['train_s'] / 60:.1f} min | "
                     f"{row['history']['accuracy'][-1]:.3f} | {row['int8_size_vs_float32_tflite']:.3f}x | {row['load']} |")
    return lines


def _distilled_markdown(distilled: dict | None) -> list[str]:
    """The distilled QAT section: its int8 model against the parent and, paired, against the label arms."""
    if distilled is None:
        return []
    arm, epochs = distilled["arm"], distilled["epochs"]
    record = arm["distillation"]
    ranges = arm.get("activation_ranges")
    start = ("activation ranges from calibration images" if ranges else "tfmot's [-6, 6] starting ranges")
    lines = ["", f"## QAT distilled from the parent ({epochs} epoch{'s' if epochs != 1 else ''}, {start}, "
                 "`compress --qat --qat-distill`)", "",
             f"The parent fine-tuned with fake quantization as above, but on the parent's own outputs on the train/ "
             f"images, softened at temperature {record['temperature']:g} (Hinton et al.), with no labels (the "
             f"parent's top-1 on those images: {record['teacher_train_top1']:.3f}); then int8 (200 calibration "
             "images). "
             "Drop = top-1 of the model it is against minus the distilled int8 model's; agreement = top-1 agreement "
             "with it; all paired on the same photos. " + (
                 f"Before training, {ranges['initialised']} activation ranges were set to their min/max in the "
                 f"parent over the {ranges['from_images']} calibration images (median width "
                 f"{ranges['median_width_after']:g}, tfmot's start {ranges['median_width_before']:g}; "
                 f"{ranges['left_at_tfmot_start']} left at tfmot's start), as `compress --qat` now does."
                 if ranges else "Activation ranges started at tfmot's [-6, 6] (measured in session 24, before "
                 "compress set them from calibration images)."), "",
             "| distilled QAT int8 against | n | drop (95% CI) | agreement |", "|---|---:|---|---:|"]
    for name, row in distilled["comparisons"].items():
        low, high = row["interval95_points"]
        lines.append(f"| {name} | {row['images']} | {row['drop_points']:+.2f} ({low:+.2f} to {high:+.2f}) | "
                     f"{row['top1_agreement']:.3f} |")
    history = arm["history"]
    lines += ["", f"Training: {arm['train_s'] / 60:.1f} min at load {arm['load']}; per epoch, agreement with the "
              f"parent's top-1 on train/ {', '.join(f'{a:.3f}' for a in history['accuracy'])}; int8 size "
              f"{arm['int8_size_vs_float32_tflite']:.3f}x the float32 TFLite."]
    return lines


def _parent_line(result: dict) -> str:
    """Which float parent every table below comes from, and the CPU it was measured on (parents finetuned on
    different CPUs differ by points, so tables of different parents must not be mixed)."""
    parent, machine = result.get("float_parent"), result.get("machine") or {}
    if parent is None:
        return "Float parent: not recorded (measured before the parent was stamped into the cache).\n"
    where = (parent["machine"] or {}).get("cpu", "a CPU its manifest does not record")
    return (f"Float parent (every table): {result['backbone']} {result['input_size']} px finetuned at defaults on "
            f"train/ by int8_accuracy.py, sha256 `{parent['sha256']}`, validation top-1 {parent['validation_top1']}, "
            f"finetuned {parent['finetuned']} on {where}; variants measured on {machine.get('cpu', 'an unrecorded CPU')} "
            f"({', '.join(machine.get('cpu_features', []))}).\n")


def _markdown(result: dict) -> str:
    header = ["| variant | n | drop (95% CI) | agreement | size vs fp32 TFLite |", "|---|---:|---|---:|---:|"]
    lines = [f"# int8 accuracy recovery: {result['backbone']} at {result['input_size']} px", "",
             _parent_line(result),
             "Same 2,440-photo pool (clothing-small test/ + extra/) as int8_accuracy.md. Drop = "
             "float top-1 minus variant top-1 in points (positive = loss), paired 95% interval; agreement = top-1 "
             "agreement with float. Every variant is converted from the same parent; calibration images come "
             "from train/ (class-stratified, seed 0).", "",
             "## Where the loss is (TFLite quantization debugger, 64 calibration images)", "",
             "RMSE/scale: each op's int8 output error in units of its quantization step (per op, then averaged "
             "over the kind). Kept float: the same int8 model with only that kind of layer left in float32.", "",
             "| kind of layer | layers | mean RMSE/scale | max | kept float: drop (95% CI) | agreement | size |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for kind, row in (result["locate"] or {"by_kind": {}})["by_kind"].items():
        kept = row["kept_float"]
        measured = "not measured (time) | - | -" if kept is None else (
            f"{kept['drop_points']:+.2f} ({kept['interval95_points'][0]:+.2f} to {kept['interval95_points'][1]:+.2f})"
            f" | {kept['top1_agreement']:.3f} | {kept['size_vs_float32_tflite']:.3f}x")
        lines.append(f"| {kind} | {row['layers']} | {row['mean_rmse_over_scale']:.3f} | "
                     f"{row['max_rmse_over_scale']:.3f} | {measured} |")
    lines += ["", "## Each recovery method on its own", ""] + header
    lines += [_row(name, row) for name, row in result["recovery"].items() if row is not None]
    int16 = result["recovery"].get("int16x8 (whole model), 200 images") or {}
    if "inference_ms_per_image" in int16:
        lines += ["", f"int16x8 runs on LiteRT's reference kernels: {int16['inference_ms_per_image']:.0f} ms per image "
                      f"(1 thread, idle priority, load {int16['load']}; {int16['wall_s'] / 60:.0f} min in all)."]
    combined = {name: row for name, row in (result.get("combined") or {}).items() if row is not None}
    if combined:
        lines += ["", "## Recoveries combined (each against the parent)", "",
                  "Int8 (200 calibration images) with the named kinds of layer kept float32, and empirical bias "
                  "correction (64 images) after it where named.", ""] + header
        lines += [_row(name, row) for name, row in combined.items()]
    lines += _equalization_markdown(result["equalization"], header)
    lines += _qat_markdown(result.get("qat_against_extra_training"))
    lines += _distilled_markdown(result.get("distilled_qat"))
    for distilled in result.get("distilled_qat_calibrated_ranges") or []:
        lines += _distilled_markdown(distilled)
    lines += ["", "Mixed int8 / int16x8 per layer: not possible with this converter. Its quantizer takes one "
              "inference type for the whole model and a deny-list that can only leave ops in float:", "",
              f"    {result['mixed_int16x8_evidence']}", ""]
    if result["not_measured"]:
        lines += [f"Not measured on this parent: {'; '.join(result['not_measured'])}. What of it was measured on "
                  f"the earlier parent (AMD EPYC) is in {EARLIER_PARENT_RESULTS}, not to be mixed with these tables.",
                  ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-int8-accuracy")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--part", choices=("all", "recover", "locate", "combine", "equalize", "int16x8", "qat",
                                           "qat-distill"),
                        action="append",
                        help="measure only this part (repeatable: one process loads the pool and the parent's outputs "
                             "once for all; the rest is read from the cache where it is there)")
    parser.add_argument("--method", action="append",
                        help="with --part recover or combine: only the rows whose name contains this (e.g. bias; "
                             "repeatable)")
    parser.add_argument("--kept-float", action="append", choices=list(KEPT_FLOAT_GROUPS),
                        help="with --part locate: keep only these kinds of layer float (repeatable; default all)")
    parser.add_argument("--int16x8-every", type=int, default=1,
                        help="score int16x8 on every N-th pool photo only (its reference kernels are slow)")
    parser.add_argument("--qat-epochs", type=int, default=1,
                        help="epochs of QAT and of the float fine-tune it is compared with (1: an epoch took 11 min "
                             "at load 12 here; compress's default is 2)")
    parser.add_argument("--distill-epochs", type=int, default=1,
                        help="with --part qat-distill: epochs of QAT on the parent's outputs, compared with the "
                             "--qat-epochs label arms (here: 1 epoch 13.6 min of training at load 7, 2 epochs 16.7 "
                             "min at load 6-9, peak memory 6.6 GiB)")
    parser.add_argument("--ranges", choices=("calibrated", "tfmot"), default="calibrated",
                        help="with --part qat-distill: start the activation ranges from 200 calibration images "
                             "(as compress does) or from tfmot's [-6, 6] (session 24's arm); every calibrated arm "
                             "cached is reported")
    parser.add_argument("--arm", action="append", choices=ARMS,
                        help="with --part qat: train only this arm (repeatable; default both), e.g. one per process")
    parser.add_argument("--cached-only", action="store_true",
                        help="measure nothing: write the results from what is cached, the rest marked not measured")
    args = parser.parse_args()
    from edgekit.artifacts import write_json_atomic, write_text_atomic
    from edgekit.machine import machine_record

    pool = linked_pool(args.work / "pool", [args.data / "test", args.data / "extra"])
    root = args.work / f"{args.backbone}-{args.size}"
    cache = root / "recovery"
    cache.mkdir(parents=True, exist_ok=True)
    parent = float_parent(root, cache)
    parts = set(args.part or ["all"])

    def measuring(part: str) -> bool:
        return not args.cached_only and bool(parts & {"all", part})

    with ExitStack() as stack:
        tools = Tools(root, args.data, pool, stack)
        recovered = recover(tools, cache, not measuring("recover"), args.method)
        located = locate(tools, cache, not measuring("locate"), args.kept_float)
        combined = combine(tools, cache, not measuring("combine"), args.method)
        equalized = equalization(tools, cache, not measuring("equalize"))
        recovered |= int16x8(tools, cache, not measuring("int16x8"), args.int16x8_every)
        qat = qat_against_extra_training(tools, cache, args.qat_epochs,
                                          tuple(args.arm or ARMS) if measuring("qat") else ())
        train = not args.cached_only and "qat-distill" in parts
        distilled = distilled_qat(tools, cache, DISTILLED, args.distill_epochs if args.ranges == "tfmot" else 1,
                                  args.qat_epochs, train=train and args.ranges == "tfmot")
        cached = {int(path.stem.split("-")[-2]) for path in cache.glob(f"fine-tune-{CALIBRATED}-*-epochs.json")}
        training = {args.distill_epochs} if train and args.ranges == "calibrated" else set()
        calibrated = [distilled_qat(tools, cache, CALIBRATED, epochs, args.qat_epochs, train=epochs in training)
                      for epochs in sorted(cached | training)]
    result = {"backbone": args.backbone, "input_size": args.size, "float_parent": parent,
              "pool": "clothing-small test/ + extra/",
              "locate": located, "recovery": recovered, "combined": combined, "qat_against_extra_training": qat,
              "distilled_qat": distilled,
              "distilled_qat_calibrated_ranges": calibrated,
              "equalization": equalized, "mixed_int16x8_evidence": _mixed_int16x8_evidence(),
              "not_measured": [name for name, row in (recovered | combined | equalized["rows"]).items()
                               if row is None] + (
                  [] if qat else ["QAT against a float model fine-tuned for the same epochs (time)"]) + (
                  [] if distilled else ["QAT distilled from the parent from tfmot's ranges (time)"]) + (
                  [] if calibrated else ["QAT distilled from the parent from calibrated ranges (time)"]),
              "machine": machine_record() | {"note": "shared with other engineers; load per variant"}}
    if "all" not in parts and not args.cached_only:
        return 0
    out = REPO / "benchmarks" / "results"
    write_json_atomic(out / "int8_recovery.json", result)
    write_text_atomic(out / "int8_recovery.md", _markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
