"""The Python API: keyword-only functions, one per stage. The CLI is a thin layer over these.

Heavy libraries load inside each function, so ``import edgekit.api`` is cheap.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.stages.finetune import FinetuneConfig, FinetuneResult


def finetune(*, data: Path, out_dir: Path, config: FinetuneConfig = FinetuneConfig(), resume: bool = False,
             strict: bool = False, distribute: str = "none") -> FinetuneResult:
    """Transfer learning from an image folder; see :func:`edgekit.stages.finetune.finetune`."""
    from edgekit.stages.finetune import finetune as run

    return run(data=data, out_dir=out_dir, config=config, resume=resume, strict=strict, distribute=distribute)


def evaluate(*, model: Path, data: Path, out_dir: Path | None = None, top_k: int = 5, threads: int | None = None,
             trust: bool = False) -> dict:
    """Classification report of any artifact on a labelled folder; see :func:`edgekit.evaluation.evaluate`."""
    from edgekit.evaluation import evaluate as run

    return run(model=model, data=data, out_dir=out_dir, top_k=top_k, threads=threads, trust=trust)
