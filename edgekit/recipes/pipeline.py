"""Run a recipe: finetune -> compress variants -> exports -> measure each on each device -> report.

Every stage records a *key* (a hash of its options, the seed, the hashes of its inputs and the
edgekit version) in ``<stage dir>/.edgekit-stage.json``. A rerun skips a stage whose key is
unchanged and whose outputs still match their recorded sha256, so an interrupted or lightly
edited recipe resumes instead of starting over, and an unchanged recipe reruns in seconds with
identical metrics. One failing variant or unavailable device is recorded as a row with its reason;
the other variants are still built and measured. A stage that ended in an :class:`AccuracyError` (a guard
that could not certify its bound) records that verdict under its key: an unchanged rerun gives the same
refusal at once instead of spending minutes reaching it again; ``--force`` tries again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekit import __version__
from edgekit.artifacts import Artifact, load_artifact, sha256_file, write_json_atomic
from edgekit.child_process import reusing_children
from edgekit.data import folder_fingerprint
from edgekit.errors import (AccuracyError, DeviceUnavailableError, EdgekitError, GateFailedError, RecipeError,
                            RunFailedError)
from edgekit.options import CompressOptions
from edgekit.progress import status
from edgekit.recipes.measure import measure_all, outcome_status
from edgekit.resources import shipped_dir

STATE_FILE = ".edgekit-stage.json"
EMBEDDED_PREFIX = "embedded:"
RECIPES_DIR = shipped_dir("recipes")

# What `edgekit sweep` builds in addition to a recipe's own variants (same names are not repeated).
STANDARD_VARIANTS = (
    {"name": "float16", "float16": True},
    {"name": "dynamic", "dynamic": True},
    {"name": "int8", "int8": True},
    {"name": "prune50-int8", "prune": 0.5, "int8": True},
    {"name": "sparse70-float32", "prune": 0.7, "prune_for": "latency"},
    {"name": "cluster16-int8", "cluster": 16, "int8": True},
    {"name": "qat-int8", "qat": True},
    {"name": "guarded-int8", "int8": True, "max_accuracy_drop": 1.0},
)
STANDARD_EXPORTS = (
    {"name": "onnx-fp32", "target": "onnx", "source": "float"},
    {"name": "onnx-int8", "target": "onnx", "source": "float", "options": {"int8": True}},
)


def shipped_recipe(name: str) -> Path:
    """A recipe shipped with edgekit (the repository's recipes/ folder, copied into the wheel)."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise RecipeError(f"shipped recipe {path} is missing", fix="reinstall edgekit from its wheel, or run it from a repository checkout")
    return path


def with_standard_variants(recipe: dict) -> dict:
    """The recipe plus every standard variant/export it does not already define (by name)."""
    names = {v["name"] for v in recipe.get("compress", [])} | {e["name"] for e in recipe.get("export", [])}
    return dict(recipe,
                compress=list(recipe.get("compress", [])) + [v for v in STANDARD_VARIANTS if v["name"] not in names],
                export=list(recipe.get("export", [])) + [e for e in STANDARD_EXPORTS if e["name"] not in names])


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class StageOutcome:
    name: str
    key: str
    skipped: bool
    seconds: float
    outputs: list[str] = field(default_factory=list)
    result: dict = field(default_factory=dict)
    error: str | None = None
    unavailable: str | None = None  # the stage needs a tool or device absent here (not a failure)


def run_stage(name: str, stage_dir: Path, key_payload: Any, work: Callable[[], tuple[list[Path], dict]],
              *, force: bool = False) -> StageOutcome:
    """Run ``work`` unless ``stage_dir`` holds outputs recorded under the same key (and unchanged)."""
    key = _digest({"stage": name, "edgekit": __version__, "inputs": key_payload})
    state_path = stage_dir / STATE_FILE
    if not force and state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
            if state.get("key") == key and "accuracy_failure" in state:
                refusal = state["accuracy_failure"]
                status(f"[{name}] unchanged, refused as before (--force tries again)")
                raise AccuracyError(refusal["message"], fix=refusal["fix"],
                                    smallest_certifiable_bound_points=refusal["smallest_certifiable_bound_points"])
            if state.get("key") == key and all(
                    (stage_dir / rel).is_file() and sha256_file(stage_dir / rel) == digest
                    for rel, digest in state["outputs"].items()):
                status(f"[{name}] unchanged, skipped")
                return StageOutcome(name, key, True, 0.0, [str(stage_dir / r) for r in state["outputs"]],
                                    state.get("result", {}))
        except (json.JSONDecodeError, KeyError, TypeError, OSError):
            pass  # unreadable state: run the stage again
    status(f"[{name}] running")
    started = time.perf_counter()
    try:
        outputs, result = work()
    except AccuracyError as exc:  # a verdict on these exact inputs, not a fault: the same inputs give it again
        write_json_atomic(state_path, {"key": key, "seconds": round(time.perf_counter() - started, 3),
                                       "accuracy_failure": {"message": exc.message, "fix": exc.fix,
                                                            "smallest_certifiable_bound_points":
                                                                exc.smallest_certifiable_bound_points}})
        raise
    seconds = time.perf_counter() - started
    recorded = {str(Path(p).resolve().relative_to(stage_dir.resolve())): sha256_file(Path(p)) for p in outputs}
    write_json_atomic(state_path, {"key": key, "outputs": recorded, "result": result, "seconds": round(seconds, 3)})
    return StageOutcome(name, key, False, seconds, [str(p) for p in outputs], result)


@dataclass
class RecipePaths:
    train: Path
    val: Path | None
    test: Path | None
    calibration: Path | None


def resolve_data(recipe: dict, *, recipe_dir: Path, out_dir: Path) -> RecipePaths:
    """Data paths relative to the recipe file, in the layouts `edgekit finetune` takes.

    ``data`` is one folder or a mapping; a train folder holding ``train/`` (+ ``val/`` + ``test/``) is a
    split root whose sub-folders fill the keys not given. ``embedded:digits`` writes scikit-learn's
    digits as images (``embedded:digits`` is the split root, ``embedded:digits/train`` one split).
    """
    from edgekit.data import find_split

    data = recipe["data"] if isinstance(recipe["data"], dict) else {"train": recipe["data"]}

    def resolve(value: str | None) -> Path | None:
        if value is None:
            return None
        if value.startswith(EMBEDDED_PREFIX):
            name, _, split = value[len(EMBEDDED_PREFIX):].partition("/")
            if name != "digits":
                raise RecipeError(f"data: unknown embedded dataset {name!r}", fix="use embedded:digits/train")
            from edgekit.data import write_digits_dataset

            root = write_digits_dataset(out_dir / "data" / "digits")
            return root / split if split else root
        path = Path(value).expanduser()
        path = path if path.is_absolute() else (recipe_dir / path).resolve()
        if not path.is_dir():
            raise RecipeError(f"data: folder {path} does not exist", fix="fix the path in the recipe (relative "
                              "paths are relative to the recipe file)")
        return path

    train, val, test = resolve(data["train"]), resolve(data.get("val")), resolve(data.get("test"))
    if find_split(train, "train") is not None:  # a split root: DATA/train (+ val/ + test/)
        train, val, test = train / "train", val or find_split(train, "val"), test or find_split(train, "test")
    return RecipePaths(train=train, val=val, test=test, calibration=resolve(data.get("calibration")))


def run_recipe(*, recipe_path: Path, out_dir: Path | None = None, force: bool = False,
               devices: list[str] | None = None, sweep: bool = False) -> dict:
    """Run every stage of the recipe (skipping unchanged ones) and write report.{json,md,html} + pareto.png.

    ``sweep`` adds the standard variants (:data:`STANDARD_VARIANTS`, :data:`STANDARD_EXPORTS`).
    """
    from edgekit.devices import get_device
    from edgekit.recipes.schema import RECIPE_PROFILE_RUNS, load_recipe

    recipe_path = Path(recipe_path).resolve()
    recipe = load_recipe(recipe_path)
    if sweep:
        recipe = with_standard_variants(recipe)
    for name in devices or recipe.get("devices") or ["cpu"]:
        get_device(name)  # unknown device names fail before any work, with a suggestion
    from edgekit.targets import get_target

    for export in recipe.get("export", []):
        get_target(export["target"]).validate_options(dict(export.get("options", {})))
    out_dir = Path(out_dir or recipe.get("output") or f"runs/{recipe['name']}")
    if not out_dir.is_absolute():
        out_dir = (Path.cwd() / out_dir).resolve()
    seed = int(recipe.get("seed", 0))
    started = time.perf_counter()
    paths = resolve_data(recipe, recipe_dir=recipe_path.parent, out_dir=out_dir)
    stages: list[StageOutcome] = []

    from edgekit.targets.tflite_converter import sharing_conversions

    # The stages' conversions share one child (one TensorFlow import, not three), and a conversion of the same
    # model content is done once: the compress stages' float32 baselines and export:float32 are one conversion.
    with reusing_children(), sharing_conversions() as conversions:
        float_artifact, outcome = _finetune_stage(recipe, paths, out_dir, seed, force)
        stages.append(outcome)
        artifacts: dict[str, Artifact | str] = {}
        for variant in recipe.get("compress", []):
            artifacts[variant["name"]], outcome = _guarded(
                variant["name"], lambda v=variant: _compress_stage(v, float_artifact, paths, out_dir, seed, force))
            stages.append(outcome)
        exports = list(recipe.get("export", []))
        if not any(e["target"] == "tflite" and e.get("source", "float") == "float" for e in exports):
            exports.insert(0, {"name": "float32", "target": "tflite", "source": "float"})  # the float baseline row
        for export in exports:
            artifacts[export["name"]], outcome = _guarded(
                export["name"], lambda e=export: _export_stage(e, float_artifact, artifacts, out_dir, seed, force))
            stages.append(outcome)

        profile_options = recipe.get("profile", {})
        rows, reference_accuracy = measure_all(
            float_artifact=float_artifact, artifacts=artifacts, devices=devices or recipe.get("devices") or ["cpu"],
            test_dir=paths.test, out_dir=out_dir, runs=profile_options.get("runs", RECIPE_PROFILE_RUNS),
            warmup=profile_options.get("warmup", 5), threads=profile_options.get("threads"),
            max_images=profile_options.get("max_eval_images"), force=force)
    from edgekit.recipes.report import write_run_report

    summary = {
        "recipe": str(recipe_path), "name": recipe["name"], "seed": seed, "output": str(out_dir),
        "float_model": str(float_artifact.path), "reference_accuracy": reference_accuracy,
        "constraints": recipe.get("constraints", {}),
        "stages": [s.__dict__ for s in stages], "rows": rows, "conversions_reused": conversions.reused,
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    summary.update(write_run_report(summary, out_dir))
    return summary


def enforce_outcome(summary: dict, *, allow_failures: bool = False) -> None:
    """Raise when a requested variant failed (RunFailedError) or, with constraints, nothing meets them
    (GateFailedError); unavailable hardware and skipped devices are not failures. Called after the
    summary is printed, so the table and report exist either way; ``allow_failures`` accepts both."""
    if allow_failures:
        return
    report = summary.get("reports", {}).get("report_md", "the run report")
    failed = {row["variant"]: row["status"].removeprefix("failed: ")
              for row in summary["rows"] if str(row.get("status", "")).startswith("failed")}
    if failed:
        name, reason = next(iter(failed.items()))
        raise RunFailedError(f"{len(failed)} requested variant(s) failed: {', '.join(failed)} (first, {name}: "
                             f"{reason})", fix=f"see {report}; fix the recipe, or pass --allow-failures to "
                                               "accept a partial run")
    constraints = summary.get("constraints") or {}
    if constraints and summary.get("pick") is None:
        measured = any(row.get("accuracy") is not None for row in summary["rows"])
        why = "" if measured else "; no row has a measured accuracy (give the recipe test images: data.test)"
        raise GateFailedError(f"no variant meets every constraint ({', '.join(f'{k} {v}' for k, v in constraints.items())}"
                              f"){why}", fix=f"see {report}; relax `constraints`, or pass --allow-failures")


def _guarded(name: str, work: Callable[[], tuple[Artifact, StageOutcome]]) -> tuple[Artifact | str, StageOutcome]:
    """Run one variant's stage; an EdgekitError becomes that variant's row status, not the run's end. The time
    until the error is kept: an Edge TPU export without the compiler still writes its static report."""
    started = time.perf_counter()
    try:
        return work()
    except EdgekitError as exc:
        row_status, seconds = outcome_status(exc), time.perf_counter() - started
        status(f"[{name}] {row_status}")
        if row_status.startswith("unavailable"):
            return row_status, StageOutcome(name, "", False, seconds, unavailable=exc.one_line())
        return row_status, StageOutcome(name, "", False, seconds, error=exc.one_line())


def _finetune_stage(recipe: dict, paths: RecipePaths, out_dir: Path, seed: int,
                    force: bool) -> tuple[Artifact, StageOutcome]:
    from edgekit.stages.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(**recipe["finetune"], seed=seed)
    stage_dir = out_dir / "float"
    strategy = recipe.get("distribute", "none")

    def work():
        result = finetune(data=paths.train, val_data=paths.val, out_dir=stage_dir, config=config,
                          distribute=strategy)
        return [result.artifact.path, stage_dir / "manifest.json"], {"validation": result.metrics["accuracy"],
                                                                     "timings_s": result.timings}

    outcome = run_stage("finetune", stage_dir, {"config": config.__dict__, "data": folder_fingerprint(paths.train),
                                                "val": folder_fingerprint(paths.val) if paths.val else None,
                                                "distribute": strategy}, work, force=force)
    return load_artifact(stage_dir), outcome


def keyed_options(options: dict) -> dict:
    """A compress variant's options as its stage key holds them, with what a changed default would change filled
    in, defaulted or not: a training variant's epochs (latency pruning's became 8, then 12) and a post-training int8
    variant's activation ranges (percentile since session 28) and weight rounding (nearest, while AdaRound's cost
    keeps it opt-in). So a cache built under an old default rebuilds that variant instead of reusing it;
    float16/dynamic keys stay as they were."""
    resolved = CompressOptions(**options)
    keyed = dict(options)
    if resolved.needs_training():
        keyed["fine_tune_epochs"] = resolved.epochs
    if resolved.int8_activation_ranges:
        keyed["activation_ranges"] = resolved.int8_activation_ranges
    if resolved.int8_weight_rounding:
        keyed["weight_rounding"] = resolved.int8_weight_rounding
    return keyed


def _compress_stage(variant: dict, parent: Artifact, paths: RecipePaths, out_dir: Path, seed: int,
                    force: bool) -> tuple[Artifact, StageOutcome]:
    from edgekit.stages.compress import compress

    options = {k: v for k, v in variant.items() if k != "name"}
    stage_dir = out_dir / "variants" / variant["name"]
    calibration = paths.calibration or paths.train

    def work():
        produced = compress(model=parent.path, out_dir=stage_dir, calibration=calibration, train_data=paths.train,
                            eval_data=paths.test, seed=seed, **options)
        final = produced[-1]
        return [final.path, final.directory / "manifest.json"], {"artifact": str(final.path)}

    outcome = run_stage(f"compress:{variant['name']}", stage_dir,
                        {"options": keyed_options(options), "parent": parent.manifest.sha256, "seed": seed,
                         "calibration": folder_fingerprint(calibration),
                         "eval": folder_fingerprint(paths.test) if paths.test else None}, work, force=force)
    return load_artifact(Path(outcome.outputs[0])), outcome


def _export_stage(export: dict, parent: Artifact, artifacts: dict, out_dir: Path, seed: int,
                  force: bool) -> tuple[Artifact, StageOutcome]:
    from edgekit.targets import get_target

    source_name = export.get("source", "float")
    source = parent if source_name == "float" else artifacts.get(source_name)
    if source is None:
        raise RecipeError(f"export {export['name']!r}: source {source_name!r} is not a compress variant",
                          fix="set source to 'float' or the name of a compress variant listed before it")
    if isinstance(source, str):
        error = DeviceUnavailableError if source.startswith("unavailable") else RecipeError
        raise error(f"export {export['name']!r}: its source {source_name!r} is {source}", fix="fix that variant")
    target = get_target(export["target"])
    options = dict(export.get("options", {}))
    target.validate_options(options)
    stage_dir = out_dir / "exports" / export["name"]

    def work():
        artifact = target.run(source.path, out_dir=stage_dir, general={"seed": seed}, **options)
        return [artifact.path, artifact.directory / "manifest.json"], {"artifact": str(artifact.path)}

    outcome = run_stage(f"export:{export['name']}", stage_dir,
                        {"target": target.name, "options": options, "source": source.manifest.sha256, "seed": seed},
                        work, force=force)
    return load_artifact(Path(outcome.outputs[0])), outcome
