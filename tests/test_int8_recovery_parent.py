"""benchmarks/int8_recovery.py records the float parent its cached results were measured on, and refuses a cache
measured on another parent (parents finetuned on different CPUs differ by points: one table, one parent)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import int8_recovery  # noqa: E402

from edgekit.artifacts import Manifest, write_artifact  # noqa: E402


def _finetuned(root: Path, weights: bytes, accuracy: float) -> str:
    """A float artifact under root/float (its bytes stand in for the weights), as int8_accuracy.py leaves it."""
    artifact = write_artifact(root / "float", "model.keras",
                              Manifest(format="keras", artifact="model.keras", stage="finetune",
                                       metrics={"validation": {"accuracy": accuracy}}),
                              writer=lambda tmp: tmp.write_bytes(weights))
    return artifact.manifest.sha256


def test_the_cache_is_stamped_with_its_parent_and_refused_for_another(tmp_path):
    cache = tmp_path / "recovery"
    cache.mkdir()
    sha = _finetuned(tmp_path, b"parent finetuned on one CPU", 0.785)
    parent = int8_recovery.float_parent(tmp_path, cache)
    assert parent["sha256"] == sha and parent["validation_top1"] == 0.785 and parent["machine"]["cpu"]
    assert int8_recovery.float_parent(tmp_path, cache) == parent  # the same parent: the cache is used

    _finetuned(tmp_path, b"parent re-finetuned on another CPU", 0.76)
    with pytest.raises(SystemExit, match=r"recovery/parent.json: .* move .*recovery away"):
        int8_recovery.float_parent(tmp_path, cache)


def test_the_markdown_names_the_parent_and_where_the_earlier_parents_rows_are(tmp_path):
    cache = tmp_path / "recovery"
    cache.mkdir()
    _finetuned(tmp_path, b"weights", 0.785)
    result = {"backbone": "mobilenet_v2", "input_size": 224, "float_parent": int8_recovery.float_parent(tmp_path, cache),
              "machine": {"cpu": "Intel(R) Xeon(R) Processor", "cpu_features": ["avx512f"]}, "locate": None,
              "recovery": {}, "combined": {}, "equalization": {"rows": {}}, "mixed_int16x8_evidence": "-",
              "not_measured": ["QAT (time)"]}
    markdown = int8_recovery._markdown(result)
    assert f"sha256 `{result['float_parent']['sha256']}`, validation top-1 0.785" in markdown
    assert "measured on Intel(R) Xeon(R) Processor (avx512f)" in markdown
    assert "Not measured on this parent: QAT (time). What of it was measured on the earlier parent (AMD EPYC) is in " \
           "int8_recovery_epyc.md" in markdown
