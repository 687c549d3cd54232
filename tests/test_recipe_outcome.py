"""Recipes take the data layouts `edgekit finetune` takes, and a run's outcome decides its exit code:
failed variants and an empty pick fail it, unavailable hardware does not (fast: no training)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekit.errors import ConversionError, DeviceUnavailableError, GateFailedError, RecipeError, RunFailedError
from edgekit.recipes.pipeline import _guarded, enforce_outcome, resolve_data
from edgekit.recipes.schema import parse_recipe

BASE = "name: r\nfinetune: {backbone: mobilenet_v2}\n"


def _split_root(root: Path, splits=("train", "val", "test")) -> Path:
    for split in splits:
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
    return root


def _paths(tmp_path: Path, data_yaml: str):
    recipe = parse_recipe(BASE + f"data: {data_yaml}\n", source="r.yaml")
    return resolve_data(recipe, recipe_dir=tmp_path, out_dir=tmp_path / "out")


def test_a_train_key_naming_a_split_root_uses_its_train_val_and_test_folders(tmp_path):
    # The recipe: data: {train: split, test: split/test} with split/ holding train/, val/ and test/.
    root = _split_root(tmp_path / "split")
    paths = _paths(tmp_path, "{train: split, test: split/test}")
    assert (paths.train, paths.val, paths.test) == (root / "train", root / "val", root / "test")


def test_data_as_one_folder_and_an_explicit_val_key_are_accepted(tmp_path):
    root = _split_root(tmp_path / "split", splits=("train", "test"))
    one = _paths(tmp_path, "split")
    assert (one.train, one.val, one.test) == (root / "train", None, root / "test")
    _split_root(tmp_path / "held")
    explicit = _paths(tmp_path, "{train: split/train, val: held/val, test: held/test}")
    assert (explicit.train, explicit.val, explicit.test) == (root / "train", tmp_path / "held" / "val",
                                                              tmp_path / "held" / "test")


def test_a_misspelt_data_key_names_the_key_path_and_the_schema_command(tmp_path):
    with pytest.raises(RecipeError, match=r"data: .*'vall'.*edgekit recipe-schema"):
        parse_recipe(BASE + "data: {train: x, vall: y}\n", source="r.yaml")


def _summary(*statuses: str, constraints=None, pick=None) -> dict:
    rows = [{"variant": f"v{i}", "device": "cpu", "status": status, "accuracy": 0.9 if status == "ok" else None}
            for i, status in enumerate(statuses)]
    return {"rows": rows, "constraints": constraints or {}, "pick": pick, "reports": {"report_md": "r/report.md"}}


def test_a_failed_variant_fails_the_run_unless_failures_are_allowed():
    summary = _summary("ok", "failed: x.tflite disagrees with its parent", "skipped: libedgetpu is not installed")
    with pytest.raises(RunFailedError, match="1 requested variant.*v1.*disagrees") as info:
        enforce_outcome(summary)
    assert info.value.exit_code == 10 and "--allow-failures" in info.value.one_line()
    enforce_outcome(summary, allow_failures=True)


def test_unavailable_hardware_and_skipped_devices_do_not_fail_the_run():
    enforce_outcome(_summary("ok", "unavailable: the Edge TPU compiler is not installed", "skipped: no GPU",
                             constraints={"max_accuracy_drop": 1.0}, pick={"variant": "v0"}))


def test_no_variant_meeting_the_constraints_fails_the_run():
    summary = _summary("ok", constraints={"max_latency_ms": 0.001})
    with pytest.raises(GateFailedError, match="no variant meets every constraint.*max_latency_ms 0.001"):
        enforce_outcome(summary)
    enforce_outcome(summary, allow_failures=True)
    enforce_outcome(_summary("ok"))  # no constraints: nothing to meet


def test_a_stage_needing_absent_hardware_is_unavailable_and_other_errors_failed():
    def absent():  # as the Edge TPU export: some work (its static report), then the missing compiler
        time.sleep(0.2)
        raise DeviceUnavailableError("the Edge TPU compiler is not installed", fix="install it")

    def broken():
        raise ConversionError("the converter crashed", fix="report it")

    row_status, outcome = _guarded("edgetpu", absent)
    assert row_status.startswith("unavailable: the Edge TPU compiler") and outcome.error is None
    assert outcome.unavailable and outcome.seconds >= 0.2  # the time it took, not 0.0
    row_status, outcome = _guarded("int8", broken)
    assert row_status.startswith("failed: the converter crashed") and outcome.error


def test_recipe_schema_command_prints_every_top_level_key_and_data_layouts():
    done = subprocess.run([sys.executable, "-m", "edgekit", "recipe-schema"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    keys = {line.split(":")[0] for line in done.stdout.splitlines() if line and not line.startswith(" ")}
    assert keys >= {"name", "data", "finetune", "compress", "export", "devices", "profile", "constraints"}
    assert "  val: string" in done.stdout and max(map(len, done.stdout.splitlines())) <= 80
