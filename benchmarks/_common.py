"""What the clothing-small benchmarks share: where the photos are, the models they build for themselves
(small finetunes, cached under ``runs/bench``) and the test images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared"))
CLOTHING = SHARED / "datasets" / "clothing-small"
WORK = REPO / "runs" / "bench"
SMALL_FINETUNE = {"epochs": 10, "augment_copies": 0}  # enough for latency, size and int8-vs-float comparisons


def clothing_float(size: int, *, epochs: int = 30, augment_copies: int = 1, work: Path = WORK):
    """A MobileNetV2 finetuned on clothing-small at ``size`` px (head only), built once into ``work``."""
    from edgekit.artifacts import load_artifact
    from edgekit.stages.finetune import FinetuneConfig, finetune

    out = work / f"float-{size}-e{epochs}-a{augment_copies}"
    if not (out / "manifest.json").is_file():
        finetune(data=CLOTHING / "train", out_dir=out,
                 config=FinetuneConfig(backbone="mobilenet_v2", input_size=size, epochs=epochs,
                                       augment_copies=augment_copies, seed=0))
    return load_artifact(out)


@contextmanager
def building() -> Iterator[None]:
    """Build every model in the block with one conversion child (one TensorFlow import, not one per export or
    compress call), converting a model of the same content to float32 once: a float export and each compress
    call's float32 size baseline of the same parent are one conversion (the recipe runner does the same).
    Each saves ~13 CPU s (MobileNetV2 160 px); the price is the idle child's ~0.7 GB kept for the block."""
    from edgekit.child_process import reusing_children
    from edgekit.targets.tflite_converter import sharing_conversions

    with reusing_children(), sharing_conversions():
        yield


def clothing_tflite_pair(size: int, *, work: Path = WORK) -> dict[str, Path]:
    """float32 and full-int8 .tflite files of a small clothing-small finetune at ``size`` px (built once)."""
    parent = clothing_float(size, **SMALL_FINETUNE, work=work)
    return tflite_pair(parent.directory, work, name=str(size), calibration=CLOTHING / "train")


def tflite_pair(parent: Path, work: Path, *, name: str, calibration: Path) -> dict[str, Path]:
    """float32 and full-int8 .tflite files of the float artifact ``parent`` under ``work`` (each built once)."""
    from edgekit.api import export
    from edgekit.stages.compress import compress

    float_dir, int8_dir = work / f"tflite-float32-{name}", work / f"tflite-int8-{name}"
    with building():
        if not (float_dir / "manifest.json").is_file():
            export(model=parent, target="tflite", out_dir=float_dir)
        if not (int8_dir / "int8" / "manifest.json").is_file():
            compress(model=parent, out_dir=int8_dir, int8=True, calibration=calibration, seed=0)
    return {"float32": float_dir / "model.tflite", "int8": int8_dir / "int8" / "model.tflite"}


def float_parent_and_test_inputs(float_dir: Path | None, *, data: Path = CLOTHING, input_size: int = 224):
    """The float artifact (finetuned once unless given) and its normalized test images + labels."""
    from edgekit.artifacts import load_artifact
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder

    parent = load_artifact(float_dir) if float_dir else clothing_float(input_size)
    preprocessing = parent.manifest.preprocessing_spec()
    test = scan_image_folder(data / "test", classes=parent.manifest.labels)
    pixels, labels = load_folder_arrays(test, preprocessing)
    return parent, normalize(pixels, preprocessing), labels
