"""`edgekit profile A B`: several models measured interleaved (A B A B, fresh processes) with ratios against
the first; and profiling an artifact copied away from its float parent (`--parent`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_profile import build_digits_pair
from test_runtime import LABELS, build_tiny_models

from edgekit.cli import main
from edgekit.runtime.latency import interleaved_rounds, ratios_to_first


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits_dir) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "runtime-models", digits_dir)


@pytest.fixture(scope="session")
def digits_pair(tmp_path_factory, digits_dir):
    return build_digits_pair(tmp_path_factory.mktemp("digits_pair"), digits_dir)


def test_rounds_interleave_the_subjects_and_report_progress_after_each():
    calls, reported = [], []
    results = interleaved_rounds(["A", "B", "C"], lambda s: calls.append(s) or f"{s}{len(calls)}", rounds=2,
                                 on_round=lambda r, row: reported.append((r, row)))
    assert calls == ["A", "B", "C", "A", "B", "C"]
    assert results == [["A1", "A4"], ["B2", "B5"], ["C3", "C6"]]
    assert reported == [(0, ["A1", "B2", "C3"]), (1, ["A4", "B5", "C6"])]


def test_ratios_are_per_round_against_the_first_with_median_min_and_max():
    first, second = ratios_to_first([[2.0, 4.0, 2.0], [1.0, 1.0, 1.5]])
    assert first == {"ratio": 1.0, "min": 1.0, "max": 1.0, "per_round": [1.0, 1.0, 1.0]}
    assert second == {"ratio": 0.5, "min": 0.25, "max": 0.75, "per_round": [0.5, 0.25, 0.75]}


def test_cli_profiles_two_models_interleaved_with_ratios_in_json(tiny_models, digits_dir, tmp_path, capsys):
    data = tmp_path / "data"
    for label in LABELS:  # the tiny models' labels are digit-0 ... digit-9
        shutil.copytree(digits_dir / "test" / label.removeprefix("digit-"), data / label)
    code = 0
    try:
        main(["profile", str(tiny_models["float"]), str(tiny_models["int8"]), "--device", "cpu-1t", "--runs", "3",
              "--warmup", "1", "--rounds", "2", "--data", str(data), "--json"])
    except SystemExit as exc:
        code = exc.code
    assert code in (0, None)
    result = json.loads(capsys.readouterr().out)
    assert result["rounds"] == 2 and [m["size_ratio"] for m in result["models"]][0] == 1.0
    assert result["models"][1]["size_ratio"] < 0.5  # int8 weights
    first, second = result["devices"]["cpu-1t"]["models"]
    assert len(first["round_p50_ms"]) == len(second["round_p50_ms"]) == 2
    assert first["p50_ratio"]["ratio"] == 1.0
    ratio = second["p50_ratio"]
    assert ratio["min"] <= ratio["ratio"] <= ratio["max"]
    assert ratio["per_round"] == [round(b / a, 4) for a, b in zip(first["round_p50_ms"], second["round_p50_ms"])]
    accuracy = result["accuracy"]["models"]
    assert accuracy[0]["drop_vs_first_points"] == 0 and accuracy[0]["images"] == accuracy[1]["images"] > 100
    assert accuracy[1]["drop_vs_first_points"] == pytest.approx((accuracy[0]["top1"] - accuracy[1]["top1"]) * 100,
                                                                abs=1e-3)


def test_several_models_refuse_single_model_options(tiny_models, tmp_path, capsys):
    code = 0
    try:
        main(["profile", str(tiny_models["float"]), str(tiny_models["int8"]), "--fail-if", "p50_ms>100"])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and "apply to one model" in capsys.readouterr().err


def test_a_copied_artifact_without_its_parent_says_how_to_give_it_and_parent_compares(digits_pair, digits_dir,
                                                                                      tmp_path):
    from edgekit.profiling import profile

    parent, child = digits_pair
    copied = tmp_path / "device" / "deep" / "int8"  # the manifest's relative parent path leads nowhere here
    shutil.copytree(child.directory, copied)
    alone = profile(model=copied, devices=("cpu-1t",), data=digits_dir / "test", runs=2, warmup=0)
    assert alone["accuracy"]["parent"] is None and "--parent" in alone["accuracy"]["parent_missing"]
    given = profile(model=copied, devices=("cpu-1t",), data=digits_dir / "test", runs=2, warmup=0,
                    parent=parent.path)
    assert given["accuracy"]["parent_path"] == str(parent.path)
    assert given["accuracy"]["accuracy_drop"] == pytest.approx(
        (given["accuracy"]["parent"]["accuracy"] - given["accuracy"]["model"]["accuracy"]) * 100, abs=1e-3)


def test_comparing_on_devices_absent_here_fails_with_their_reasons(tiny_models):
    from edgekit.devices import get_device
    from edgekit.errors import DeviceUnavailableError
    from edgekit.profiling import compare

    if get_device("edgetpu").available("tflite")[0]:
        pytest.skip("an Edge TPU is attached here")
    with pytest.raises(DeviceUnavailableError, match="edgetpu: "):
        compare(models=[tiny_models["float"], tiny_models["int8"]], devices=["edgetpu"], runs=1, rounds=1)
