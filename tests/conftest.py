"""The shared fixture layer: real (small) data and real (tiny) models, built once per session.

- ``digits_dir``: scikit-learn's bundled handwritten digits written as a PNG image folder
  (``train/<digit>/``, ``test/<digit>/``), 32 px: real images, no download.
- ``clothing_dir``: ../shared/datasets/clothing-small (real photos); skipped when absent.
- ``tiny_float_artifact``: a real finetune run (MobileNetV2 with its real ImageNet weights, 32 px) on
  the digits: the float parent every compress/export/profile test starts from. Real weights matter:
  a random-init backbone gives collapsed features (chance accuracy), which hides quantization bugs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("EDGEKIT_QUIET", "1")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared"))
CLOTHING = SHARED / "datasets" / "clothing-small"


@pytest.fixture(scope="session", autouse=True)
def isolated_user_cache(tmp_path_factory) -> Path:
    """Point the user cache (verified-model markers) at a session folder, never the real ~/.cache."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    from edgekit.data import write_digits_dataset

    return write_digits_dataset(tmp_path_factory.mktemp("data") / "digits", size=32)


@pytest.fixture(scope="session")
def clothing_dir() -> Path:
    if not (CLOTHING / "train").is_dir():
        pytest.skip(f"real photo dataset not found at {CLOTHING} (set EDGEKIT_SHARED to the shared folder)")
    return CLOTHING


@pytest.fixture(scope="session")
def tiny_float_artifact(tmp_path_factory, digits_dir):
    """A finetuned tiny classifier artifact (model.keras + manifest.json) on the digits."""
    from edgekit.stages.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(backbone="mobilenet_v2", weights="imagenet", input_size=32, epochs=15,
                            augment_copies=0, early_stopping=0, seed=0)
    result = finetune(data=digits_dir / "train", out_dir=tmp_path_factory.mktemp("float") / "float", config=config)
    return result.artifact


def sha256_tree(folder: Path) -> dict[str, str]:
    """Hashes of every file below ``folder``: compare before/after to prove nothing was overwritten."""
    from edgekit.artifacts import sha256_file

    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}
