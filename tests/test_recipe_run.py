"""`edgekit run` end to end on the embedded digits: report files, failure rows, and unchanged reruns skipping."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgekit.errors import RunFailedError, UsageError
from edgekit.recipes.pipeline import run_recipe

pytestmark = pytest.mark.slow  # runs whole recipes end to end (~2 min): runs in CI after the fast suite

RECIPE = """
name: tiny
seed: 0
data: {train: "embedded:digits/train", test: "embedded:digits/test"}
finetune: {backbone: mobilenet_v2, input_size: 32, epochs: 5, augment_copies: 0}
compress:
  - {name: int8, int8: true, calibration_samples: 50}
  - {name: broken, cluster: 4, int8: true, calibration_samples: 50, fine_tune_epochs: 0}
  - {name: float16, float16: true}
export:
  - {name: edgetpu, target: edgetpu, source: int8}
devices: [cpu-1t, edgetpu]
profile: {runs: 5, warmup: 1, max_eval_images: 100}
constraints: {max_accuracy_drop: 50}
"""


CONVERTER_CHILDREN: list[int] = []  # the pid of the child each TFLite conversion of the first run ran in


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    from edgekit import child_process

    class RecordingWorker(child_process._Worker):
        def submit(self, function, args):
            future = super().submit(function, args)
            if getattr(function, "__name__", "") == "_child_convert":
                CONVERTER_CHILDREN.append(self.children[0].pid)
            return future

    folder = tmp_path_factory.mktemp("recipe")
    recipe = folder / "tiny.yaml"
    recipe.write_text(RECIPE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(child_process, "_Worker", RecordingWorker)
        return recipe, folder / "out", run_recipe(recipe_path=recipe, out_dir=folder / "out")


def test_the_stages_conversions_share_one_child_so_tensorflow_is_imported_once_for_them(first_run):
    # compress:int8 and compress:float16 each convert; both ran in the same spawned child
    assert len(CONVERTER_CHILDREN) == 2 and len(set(CONVERTER_CHILDREN)) == 1


def test_the_float32_conversion_is_done_once_for_every_stage_that_needs_it(first_run):
    """compress:int8 converts float32 (its size baseline) with int8; compress:float16's baseline and
    export:float32 reuse those bytes instead of converting the same model again."""
    _, out, summary = first_run
    assert summary["conversions_reused"] == 2
    assert {s["name"] for s in summary["stages"] if not s["error"]} >= {"compress:float16", "export:float32"}
    assert (out / "exports" / "float32" / "model.tflite").is_file()


def test_run_writes_reports_with_a_pick_and_reasons_for_skipped_devices(first_run):
    _, out, summary = first_run
    for name in ("report.json", "report.md", "report.html", "pareto.png"):
        assert (out / name).is_file()
    rows = {(r["variant"], r["device"]): r for r in summary["rows"]}
    assert rows[("int8", "cpu-1t")]["status"] == "ok" and rows[("int8", "cpu-1t")]["p50_ms"] > 0
    assert rows[("int8", "edgetpu")]["status"].startswith("skipped: libedgetpu")
    # An absent tool is reported as unavailable, not as a failure of the run.
    assert rows[("edgetpu", "cpu-1t")]["status"].startswith("unavailable: the Edge TPU compiler is not installed")
    edgetpu = next(s for s in summary["stages"] if s["name"] == "edgetpu")
    assert edgetpu["seconds"] > 0, "the static compatibility report it wrote took time"
    assert rows[("broken", "cpu-1t")]["status"].startswith("failed: ")
    assert summary["pick"] is not None and "Pareto front" in (out / "report.md").read_text()
    # The `broken` variant (clustering with 0 fine-tune epochs) fails alone: a failure row per device, and
    # the run goes on to measure everything else.
    broken = [r for r in summary["rows"] if r["variant"] == "broken"]
    assert {r["device"] for r in broken} == {"cpu-1t", "edgetpu"}
    for row in broken:
        assert row["status"].startswith("failed: ") and "--fine-tune-epochs must be >= 1" in row["status"], row
    failed = [s for s in summary["stages"] if s["error"] and "--fine-tune-epochs must be >= 1" in s["error"]]
    assert len(failed) == 1 and "broken" in failed[0]["name"]
    assert "broken" in (out / "report.md").read_text()


def test_rerun_of_an_unchanged_recipe_skips_every_successful_stage_with_identical_metrics(first_run, tmp_path):
    recipe, out, summary = first_run
    again = run_recipe(recipe_path=recipe, out_dir=out)
    ran = [s["name"] for s in again["stages"] if not (s["skipped"] or s["error"] or s["unavailable"])]
    assert ran == []
    # The skipped rerun's numbers come from its cache: check them against a forced run that recomputes
    # every stage from scratch in a fresh folder (same seed), not against that cache.
    forced = run_recipe(recipe_path=recipe, out_dir=tmp_path / "forced", force=True)
    recomputed = [s["name"] for s in forced["stages"] if not s["skipped"] and not s["error"]]
    assert "finetune" in recomputed and "compress:int8" in recomputed
    assert again["reference_accuracy"] == forced["reference_accuracy"] == summary["reference_accuracy"]

    def accuracies(run):
        return {(r["variant"], r["device"]): r.get("accuracy") for r in run["rows"]}

    assert accuracies(again) == accuracies(forced) == accuracies(summary)
    assert accuracies(forced)[("int8", "cpu-1t")] is not None


def test_editing_one_variant_reruns_only_that_stage(first_run, tmp_path):
    recipe, out, _ = first_run
    edited = tmp_path / "tiny.yaml"
    edited.write_text(recipe.read_text().replace("calibration_samples: 50}\n  - {name: broken",
                                                 "calibration_samples: 60}\n  - {name: broken"))
    summary = run_recipe(recipe_path=edited, out_dir=out)
    ran = {s["name"] for s in summary["stages"] if not s["skipped"]}
    assert "compress:int8" in ran and "finetune" not in ran


def test_unknown_device_fails_before_any_work_with_a_suggestion(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("[cpu-1t, edgetpu]", "[cpu-1tt]"))
    with pytest.raises(UsageError, match="did you mean"):
        run_recipe(recipe_path=recipe, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_run_lists_rows_and_exits_non_zero_for_the_failed_variant_unless_allowed(first_run):
    recipe, out, _ = first_run
    command = [sys.executable, "-m", "edgekit", "run", str(recipe), "--out", str(out), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == RunFailedError.exit_code, result.stderr
    assert "broken" in result.stderr.splitlines()[-1] and "--allow-failures" in result.stderr
    assert {r["variant"] for r in json.loads(result.stdout)["rows"]} >= {"int8", "float32"}
    allowed = subprocess.run(command + ["--allow-failures"], capture_output=True, text=True, timeout=600)
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.parametrize("width", [80, 120])
def test_cli_run_table_fits_the_terminal_and_names_each_failure_once(first_run, width):
    recipe, out, _ = first_run
    result = subprocess.run([sys.executable, "-m", "edgekit", "run", str(recipe), "--out", str(out), "--allow-failures"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": str(width)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line.rstrip()) <= width for line in lines), result.stdout
    # a failed build and an absent tool: one line each, not one per device
    assert sum(line.startswith("  variant broken: not built: ") for line in lines) == 1, result.stdout
    assert sum(line.startswith("  variant edgetpu: unavailable here: ") for line in lines) == 1, result.stdout
    assert sum(line.startswith("  device edgetpu: skipped for every variant: ") for line in lines) == 1
    assert any(line.startswith("pick: ") for line in lines)
