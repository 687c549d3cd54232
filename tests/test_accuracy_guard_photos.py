"""The accuracy guard keeps its promise on real photos (clothing-small; slow).

The guard tunes on part of the labelled pool it is given and certifies on a disjoint part; this
test then checks the certified bound on a third part of the photos that compress never saw.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BOUND = 1.5


def _linked_folder(root: Path, images: list[Path]) -> Path:
    """A <class>/ folder of symlinks to ``images`` (each already inside its class folder)."""
    for image in images:
        target = root / image.parent.name / f"{image.parent.parent.name}-{image.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(image)
    return root


@pytest.mark.slow
def test_certified_bound_holds_on_photos_the_guard_never_saw(clothing_dir, tmp_path):
    from edgekit.data import scan_image_folder, stratified_split
    from edgekit.errors import AccuracyError
    from edgekit.profiling.accuracy import accuracy_loss
    from edgekit.stages.compress import compress
    from edgekit.stages.finetune import FinetuneConfig, finetune

    extra = scan_image_folder(clothing_dir / "extra")
    given_idx, unseen_idx = stratified_split(extra.labels, 1 / 3, seed=7)
    pool = _linked_folder(tmp_path / "pool", scan_image_folder(clothing_dir / "test").paths +
                          [extra.paths[i] for i in given_idx])
    unseen = _linked_folder(tmp_path / "unseen", [extra.paths[i] for i in unseen_idx])
    float_model = finetune(data=clothing_dir / "train", out_dir=tmp_path / "float",
                           config=FinetuneConfig(backbone="efficientnet_lite0", input_size=128, epochs=15,
                                                 augment_copies=0, seed=0)).artifact
    try:
        (guarded,) = compress(model=float_model.path, out_dir=tmp_path / "guarded", int8=True,
                              max_accuracy_drop=BOUND, eval_data=pool)
        bound = BOUND
    except AccuracyError as refused:
        # The fine-tune differs between CPUs (README: reproducibility): on an Intel Xeon this int8 model lost
        # 1.05 points on the certification split, so 1.5 cannot be certified there. The refusal names the
        # smallest bound these images certify; asked for that bound, the guard must certify it, and it must
        # hold on the unseen photos.
        bound = refused.smallest_certifiable_bound_points
        assert bound is not None and bound > BOUND, refused
        (guarded,) = compress(model=float_model.path, out_dir=tmp_path / "guarded-at-smallest", int8=True,
                              max_accuracy_drop=bound, eval_data=pool)
    guard = guarded.manifest.extra["accuracy_guard"]
    assert guard["certified"] and guard["certification"]["certified_upper_points"] <= bound
    pool_images = len(scan_image_folder(pool).items)
    assert guard["tuning_images"] + guard["certification"]["images"] == pool_images
    # the check: photos neither the tuning nor the certification saw
    check = accuracy_loss(guarded, unseen)
    assert check["images"] == len(unseen_idx) > 600
    assert check["accuracy_drop"] <= bound, check["change"]
    assert check["change"]["interval95_points"][0] <= bound
    assert guard["size_vs_float32_tflite"] <= 0.40
    # and the number compress reported is the certification split's, not the tuning split's
    assert guarded.manifest.metrics["accuracy"]["images"] == guard["certification"]["images"]
