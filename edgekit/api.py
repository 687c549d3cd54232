"""The Python API: keyword-only functions, one per stage. The CLI is a thin layer over these.

Heavy libraries load inside each function, so ``import edgekit.api`` is cheap.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.stages.finetune import FinetuneConfig, FinetuneResult


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


def compress(*, model: Path, out_dir: Path, **options):
    """Prune / cluster / QAT / post-training quantize to TFLite; see :func:`edgekit.stages.compress.compress`."""
    from edgekit.stages.compress import compress as run

    return run(model=model, out_dir=out_dir, **options)


def export(*, model: Path, target: str, out_dir: Path, **options):
    """Export to a registered target (``tflite``, ``onnx``, ``edgetpu``); options are validated per target."""
    from edgekit.targets import get_target

    return get_target(target).run(model, out_dir=out_dir, **options)


def profile(*, model: Path, devices: tuple[str, ...] = ("cpu",), data: Path | None = None, **options) -> dict:
    """Latency, memory and accuracy loss on device profiles; see :func:`edgekit.profiling.profile`."""
    from edgekit.profiling import profile as run

    return run(model=model, devices=devices, data=data, **options)


def run_recipe(*, recipe: Path, out_dir: Path | None = None, force: bool = False, sweep: bool = False) -> dict:
    """A whole pipeline from one recipe file, skipping unchanged stages; see :mod:`edgekit.recipes.runner`."""
    from edgekit.recipes.runner import run_recipe as run

    return run(recipe_path=recipe, out_dir=out_dir, force=force, sweep=sweep)
