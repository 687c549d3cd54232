"""The Python API: keyword-only functions, one per stage. The CLI is a thin layer over these.

Every option is an explicit keyword whose default is the stage's option model's
(:mod:`edgekit.options`; tests/test_api.py checks they agree); ``compress`` is the stage function
itself. Heavy libraries load inside each function, so ``import edgekit.api`` is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.stages.compress import compress  # noqa: F401  (the stage itself: its signature is the API's)
from edgekit.stages.finetune import FinetuneConfig, FinetuneResult

if TYPE_CHECKING:
    from edgekit.artifacts import Artifact
    from edgekit.importer import ImportOptions


def finetune(*, data: Path, out_dir: Path, config: FinetuneConfig = FinetuneConfig(), resume: bool = False,
             strict: bool = False, distribute: str = "none", val_data: Path | None = None) -> FinetuneResult:
    """Transfer learning from an image folder; see :func:`edgekit.stages.finetune.finetune`."""
    from edgekit.stages.finetune import finetune as run

    return run(data=data, out_dir=out_dir, config=config, resume=resume, strict=strict, distribute=distribute,
               val_data=val_data)


def evaluate(*, model: Path, data: Path, out_dir: Path | None = None, top_k: int = 5, threads: int | None = None,
             trust: bool = False) -> dict:
    """Classification report of any artifact on a labelled folder; see :func:`edgekit.evaluation.evaluate`."""
    from edgekit.evaluation import evaluate as run

    return run(model=model, data=data, out_dir=out_dir, top_k=top_k, threads=threads, trust=trust)


def import_model(*, model: Path, out_dir: Path, options: ImportOptions | None = None) -> Artifact:
    """Describe a model edgekit did not make (labels, preprocessing) in a manifest; see :mod:`edgekit.importer`."""
    from edgekit.importer import ImportOptions, import_model as run

    return run(model=model, out_dir=out_dir, options=options or ImportOptions())


def export(*, model: Path, target: str, out_dir: Path, int8: bool = False, dynamic: bool = False,
           opset: int | None = None, calibration: Path | None = None, calibration_samples: int | None = None,
           calibrate_method: str | None = None, simplify: bool = False, seed: int = 0, trust: bool = False,
           import_options: ImportOptions | None = None) -> Artifact:
    """Export to a registered target (``tflite``, ``onnx``; see ``edgekit targets``), validated against the parent.

    The target options are :class:`edgekit.options.ExportOptions`; the target refuses those it does not take
    when they are set away from their defaults. ``seed``, ``trust`` and ``import_options`` apply to every target.
    """
    from edgekit.options import ExportOptions

    chosen = _target(target, command="export")
    values = {"int8": int8, "dynamic": dynamic, "opset": opset, "calibration": calibration,
              "calibration_samples": calibration_samples, "calibrate_method": calibrate_method, "simplify": simplify}
    given = {name: value for name, value in values.items() if value != ExportOptions.model_fields[name].default}
    return chosen.run(model, out_dir=out_dir, general={"seed": seed, "trust": trust, "import_options": import_options},
                      **given)


def compile_model(*, model: Path, out_dir: Path, target: str = "edgetpu") -> Artifact:
    """Compile a full-int8 .tflite for an accelerator target (``edgekit targets``). Where the compiler is absent
    the target writes its static report into ``out_dir`` and raises DeviceUnavailableError."""
    return _target(target, command="compile").run(model, out_dir=out_dir)


def static_report(*, model: Path, target: str = "edgetpu"):
    """What ``target``'s compiler would do with ``model``, judged from the file alone, when the compiler is not
    installed here (None when it is, or when the target has no static report)."""
    import importlib

    chosen = _target(target, command="compile")
    if chosen.static_report is None or chosen.available()[0]:
        return None
    from edgekit.artifacts import load_artifact

    report = getattr(importlib.import_module(chosen.module), chosen.static_report)
    return report(load_artifact(model, require_manifest=False).path)


def _target(name: str, *, command: str):
    """The registered target, refused when another command produces it."""
    from edgekit.errors import UsageError
    from edgekit.targets import get_target

    chosen = get_target(name)
    if chosen.command != command:
        raise UsageError(f"target {chosen.name!r} is produced by `edgekit {chosen.command}`, not `edgekit {command}`",
                         fix=f"run `edgekit {chosen.command} MODEL --target {chosen.name}`")
    return chosen


def profile(*, model: Path, devices: Sequence[str] = ("cpu",), data: Path | None = None, runs: int = 50,
            warmup: int = 5, threads: int | None = None, fail_if: Sequence[str] = (), budget_s: float | None = None,
            report_dir: Path | None = None, parent: Path | None = None,
            import_options: ImportOptions | None = None) -> dict:
    """Latency, memory and accuracy loss on device profiles (options: :class:`edgekit.options.ProfileOptions`);
    failed ``fail_if`` gates are reported in the result, raised by :func:`enforce_gates`. See
    :func:`edgekit.profiling.profile`."""
    from edgekit.profiling import profile as run

    return run(model=model, devices=tuple(devices), data=data, runs=runs, warmup=warmup, threads=threads,
               fail_if=tuple(fail_if), budget_s=budget_s, report_dir=report_dir, parent=parent,
               import_options=import_options)


def compare(*, models: Sequence[Path], devices: Sequence[str] = ("cpu",), data: Path | None = None, runs: int = 50,
            warmup: int = 5, rounds: int = 5, threads: int | None = None, budget_s: float | None = None,
            import_options: ImportOptions | None = None) -> dict:
    """Several models measured interleaved, as ratios against the first; see :func:`edgekit.profiling.compare`."""
    from edgekit.profiling import compare as run

    return run(models=list(models), devices=tuple(devices), data=data, runs=runs, warmup=warmup, rounds=rounds,
               threads=threads, budget_s=budget_s, import_options=import_options)


def enforce_gates(result: dict) -> None:
    """Raise GateFailedError (exit 8) when a ``fail_if`` gate of a profile or monitor result held."""
    from edgekit.gates import enforce_gates as run

    run(result)


def monitor(*, log: Path, model: Path | None = None, reference: Path | None = None, out_dir: Path | None = None,
            thresholds: dict[str, float] | None = None, window_s: float = 3600.0, fail_if: Sequence[str] = (),
            last: int | None = None) -> dict[str, Any]:
    """Drift report of a prediction log against a reference profile; see :func:`edgekit.monitoring.monitor`."""
    from edgekit.monitoring import monitor as run

    return run(log=log, model=model, reference=reference, out_dir=out_dir, thresholds=thresholds,
               window_s=window_s, fail_if=tuple(fail_if), last=last)


def run_recipe(*, recipe: Path, out_dir: Path | None = None, force: bool = False, sweep: bool = False,
               devices: Sequence[str] | None = None) -> dict:
    """A whole pipeline from one recipe file, skipping unchanged stages; ``devices`` replaces the recipe's.
    Raising on failed variants / no pick is left to :func:`enforce_outcome`. See :mod:`edgekit.recipes.pipeline`."""
    from edgekit.recipes.pipeline import run_recipe as run

    return run(recipe_path=recipe, out_dir=out_dir, force=force, sweep=sweep,
               devices=list(devices) if devices else None)


def enforce_outcome(summary: dict, *, allow_failures: bool = False) -> None:
    """Raise when a requested variant of a recipe run failed (exit 10) or nothing met its constraints (exit 8)."""
    from edgekit.recipes.pipeline import enforce_outcome as run

    run(summary, allow_failures=allow_failures)


def shipped_recipe(name: str) -> Path:
    """The path of a recipe shipped with edgekit (e.g. ``quickstart``)."""
    from edgekit.recipes.pipeline import shipped_recipe as find

    return find(name)


def recipe_schema() -> dict:
    """The recipe JSON Schema (draft 2020-12), its stage sections generated from :mod:`edgekit.options`."""
    from edgekit.recipes.schema import RECIPE_SCHEMA

    return RECIPE_SCHEMA


def targets() -> list[dict[str, Any]]:
    """One row per export/compile target: suffix, command, options, needs, and whether it is available here."""
    from edgekit.targets import list_targets

    return list_targets()


def devices() -> list[dict[str, Any]]:
    """One row per device profile (built-in, ./devices/*.yaml, $EDGEKIT_DEVICES) with its availability here."""
    from edgekit.devices import list_devices

    return [{**device.to_dict(), **_availability(device)} for device in list_devices()]


def _availability(device) -> dict[str, Any]:
    """``available``/``reason`` of one profile. A local profile for several formats whose answers differ (gpu:
    .tflite on LiteRT's WebGPU, .onnx on onnxruntime's CUDA provider) names each format's answer, and
    ``formats_available`` says which format runs: a GPU box with Vulkan but no onnxruntime-gpu is half ready."""
    if device.transport == "ssh" or len(device.formats) < 2:
        ok, reason = device.available()
        return {"available": ok, "reason": reason}
    checks = {fmt: device.available(fmt) for fmt in device.formats}
    runs = {fmt: ok for fmt, (ok, _) in checks.items()}
    ok, reason = next(iter(checks.values()))
    if not all(runs.values()) and len({why for _, why in checks.values()}) > 1:
        ok = any(runs.values())  # where some run, each format's reason says whether it does
        answers = {fmt: (" yes" if fmt_ok else " no") if ok else "" for fmt, fmt_ok in runs.items()}
        reason = "; ".join(f".{fmt}{answers[fmt]}: {why}" for fmt, (_, why) in checks.items())
    return {"available": ok, "reason": reason, "formats_available": runs}


def backbones() -> list[dict[str, Any]]:
    """One row per backbone: input sizes, feature size, where its ImageNet weights come from, licence."""
    from edgekit.backbones import list_backbones

    return [{"name": s.name, "family": s.family, "default_size": s.default_size, "min_size": s.min_size,
             "feature_dim": s.feature_dim, "weights": s.weights_package or s.weights_source,
             "tfmot_wrap": s.tfmot_wrap, "license": s.license, "description": s.description}
            for s in list_backbones()]
