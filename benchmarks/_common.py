"""What the clothing-small benchmarks share: the float parent (finetuned once, reused) and the test images."""

from __future__ import annotations

from pathlib import Path


def float_parent_and_test_inputs(float_dir: Path | None, *, work: Path, data: Path, input_size: int | None = None):
    """The float artifact (finetuned into ``work/float`` unless given) and its normalized test images + labels."""
    from edgekit.artifacts import load_artifact
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder

    if float_dir is None:
        from edgekit.stages.finetune import FinetuneConfig, finetune

        float_dir = work / "float"
        if not (float_dir / "manifest.json").is_file():
            finetune(data=data / "train", out_dir=float_dir,
                     config=FinetuneConfig(backbone="mobilenet_v2", input_size=input_size, epochs=30,
                                           augment_copies=1, seed=0))
    parent = load_artifact(float_dir)
    preprocessing = parent.manifest.preprocessing_spec()
    test = scan_image_folder(data / "test", classes=parent.manifest.labels)
    pixels, labels = load_folder_arrays(test, preprocessing)
    return parent, normalize(pixels, preprocessing), labels
