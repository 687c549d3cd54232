"""README's measured table is generated from benchmarks/results: the two must agree, and missed goals show."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readme_numbers():
    return _benchmark("readme_numbers")


def test_readme_table_matches_the_results_files():
    numbers = _readme_numbers()
    block = numbers.current_block((REPO / "README.md").read_text(encoding="utf-8"))
    assert block is not None, "README.md lost its measured-table markers"
    assert block == numbers.render(numbers.load_results()), \
        "README.md disagrees with benchmarks/results: run python benchmarks/readme_numbers.py"


def test_results_files_name_no_temporary_folder():
    for path in sorted((REPO / "benchmarks" / "results").rglob("*")):
        if path.suffix in (".json", ".md", ".html"):
            text = path.read_text(encoding="utf-8")
            assert "/tmp/" not in text, f"{path.relative_to(REPO)} points into a temporary folder"


def test_a_missed_goal_is_marked_and_a_met_one_is_not():
    numbers = _readme_numbers()
    result = {"models": {f"m{i}": {"within_goal": i < 3, "difference_pct": 2.0 * i, "difference_ms": 0.01 * i}
                         for i in range(8)}, "goal_pct": 5.0}
    [(_, text, goal, status)] = numbers.profiler_rows(result)
    assert status == "**MISSED**" and "3/8 within 5%" in text and "m3 +6.0% (+0.030 ms)" in text
    result["models"] = {name: {**m, "within_goal": True} for name, m in result["models"].items()}
    assert numbers.profiler_rows(result)[0][3] == "met"
    quickstart = {"environment": {"load_before": {"1min": 3.2}}, "cores": 2, "pipeline_s": 200.0, "rerun_s": 4.0,
                  "goal_met": False}
    assert numbers.quickstart_rows(quickstart)[0][3] == "**MISSED**"
    distilled = {"backbone": "mobilenet_v2", "input_size": 224, "distilled_qat": {"epochs": 1, "comparisons": {
        "parent": {"drop_points": 0.5, "interval95_points": [-0.4, 1.4], "images": 2440, "top1_agreement": 0.93}}}}
    [(what, text, _, status)] = numbers.int8_recovery_rows(distilled)
    assert status == "met, **MISSED**" and "agreement 0.930" in text and "(1 epoch," in what
    assert numbers.int8_recovery_rows({"distilled_qat": None}) == []
    distilled["distilled_qat_calibrated_ranges"] = [{"epochs": 2, "comparisons": {"parent": {
        "drop_points": 0.2, "interval95_points": [-0.6, 1.0], "images": 2440, "top1_agreement": 0.96}}}]
    (_, _, _, tfmot_status), (what, text, _, status) = numbers.int8_recovery_rows(distilled)
    assert tfmot_status == "met, **MISSED**" and "tfmot's [-6, 6]" in numbers.int8_recovery_rows(distilled)[0][0]
    assert status == "met, met" and "(2 epochs, ranges from 200 calibration images" in what and "0.960" in text
    distilled["recovery"] = {"int16x8 (whole model), 200 images": {
        "drop_points": -0.3, "interval95_points": [-1.0, 0.4], "images": 2440, "top1_agreement": 0.951,
        "size_vs_float32_tflite": 0.328},
        "int8 + bias correction (200 images; 64 for the correction)": None}
    distilled["combined"] = {"residual adds float + bias correction": {
        "drop_points": 1.1, "interval95_points": [0.2, 2.0], "images": 2440, "top1_agreement": 0.94}}
    *_, (int16_what, _, _, int16_status), (combined_what, _, _, combined_status) = numbers.int8_recovery_rows(distilled)
    assert "whole-model int16x8" in int16_what and int16_status == "met, met, **MISSED**"  # 0.328x > 0.31x
    assert "residual adds float + bias correction" in combined_what and combined_status == "**MISSED**, **MISSED**"


def test_each_int8_recovery_row_names_its_float_parent_and_the_earlier_parent_gives_only_its_own_sections():
    numbers = _readme_numbers()
    row = {"drop_points": 0.5, "interval95_points": [-0.4, 1.4], "images": 2440, "top1_agreement": 0.93,
           "size_vs_float32_tflite": 0.308}
    result = {"backbone": "mobilenet_v2", "input_size": 224, "float_parent": {"sha256": "464a871bdd59" + "0" * 52},
              "machine": {"cpu": "Intel(R) Xeon(R) Processor"}, "combined": {"depthwise convs float": row},
              "recovery": {"int16x8 (whole model), 200 images": row},
              "distilled_qat": {"epochs": 1, "comparisons": {"parent": row}}}
    combined_what = numbers.int8_recovery_rows(result)[-1][0]
    assert "(464a871bdd59, measured on Intel Xeon)" in combined_what and "depthwise convs float" in combined_what
    # distilled QAT only: int16x8 and the combinations were re-measured on the Intel Xeon parent
    [(earlier_what, *_)] = numbers.SOURCES["int8_recovery_epyc"](result)
    assert "QAT distilled" in earlier_what and "AMD EPYC" in earlier_what and "464a871bdd59" not in earlier_what
    assert "(not recorded)" in numbers.int8_recovery_rows({"combined": {"adds float": row}})[0][0]


def test_drop_sign_convention_is_positive_for_a_loss():
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from harness import accuracy_drop

    labels = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    worse = accuracy_drop(labels, labels, [0, 1, 2, 3, 4, 5, 6, 7, 0, 0])
    better = accuracy_drop(labels, [0, 1, 2, 3, 4, 5, 6, 7, 0, 0], labels)
    assert worse["drop_points"] == 20.0 and better["drop_points"] == -20.0
    low, high = worse["ci95_points"]
    assert low < 20.0 < high


def test_an_int8_accuracy_row_whose_methods_came_from_different_float_parents_is_flagged():
    # Session 27: MobileNetV2 224's int8 was re-measured on a re-finetuned parent beside guarded rows of the old one.
    bench = _benchmark("int8_accuracy")
    int8 = {"images": 2440, "drop_points": 1.93, "interval95_points": [0.9, 2.95], "top1_agreement": 0.905,
            "size_vs_float32_tflite": 0.305, "parent_sha256": "a" * 64}
    failed = {"bound_points": 1.5, "certified": False, "error": "not certified", "parent_sha256": "a" * 64}
    row = {"backbone": "mobilenet_v2", "input_size": 224, "float_parent_sha256": "a" * 64, "int8": int8,
           "guarded": failed}
    assert not bench.mixed_parents(row) and "Not one float parent" not in bench._markdown([row], 1.5)
    row["guarded_bias_correction"] = failed | {"parent_sha256": "b" * 64}
    assert bench.mixed_parents(row)
    assert bench._markdown([row], 1.5).splitlines()[-1] == (
        "**Not one float parent** in mobilenet_v2 224 (float aaaaaaaaaaaa, int8 aaaaaaaaaaaa, guarded aaaaaaaaaaaa, "
        "guarded_bias_correction bbbbbbbbbbbb): its methods are not comparable with each other; re-measure them "
        "on one parent.")
    row["guarded_bias_correction"] = {key: value for key, value in failed.items() if key != "parent_sha256"}
    assert bench.mixed_parents(row) and "guarded_bias_correction not recorded" in bench._markdown([row], 1.5)
    legacy = {key: value for key, value in row.items() if key != "float_parent_sha256"} | {
        "int8": {key: value for key, value in int8.items() if key != "parent_sha256"},
        "guarded": row["guarded_bias_correction"]}
    assert not bench.mixed_parents(legacy)  # nothing recorded: nothing to compare


def test_an_int8_accuracy_row_measured_one_method_at_a_time_shows_only_what_it_has():
    # int8_accuracy.py --only-measured writes rows whose guarded methods are still running (MobileNetV2 160).
    bench = _benchmark("int8_accuracy")
    int8 = {"images": 2440, "drop_points": 2.951, "interval95_points": [1.814, 4.083], "top1_agreement": 0.88975,
            "size_vs_float32_tflite": 0.3052}
    row = {"backbone": "mobilenet_v2", "input_size": 160, "int8": int8}
    goals = bench._goals(row)
    assert goals == {"int8_drop_le_1.0": False, "int8_agreement_ge_0.95": False, "int8_size_le_0.31x": True}
    table = bench._markdown([row], 1.5).splitlines()
    assert table[-1] == "| mobilenet_v2 | 160 | int8 | 2440 | +2.95 (+1.81 to +4.08) | 0.890 | 0.305x | - |"
    [(what, _, _, status)] = _readme_numbers().int8_accuracy_rows({"rows": [row], "goals": {"mobilenet_v2@160": goals}})
    assert what.startswith("int8 vs float32 TFLite, mobilenet_v2 160 px") and status == "**MISSED**, **MISSED**, met"


def test_a_refused_guard_keeps_its_table_cell_short_and_its_whole_error_below_the_table():
    # A refusal's one-line error runs to ~600 characters; in the cell it stretched the README's table.
    bench = _benchmark("int8_accuracy")
    int8 = {"images": 2440, "drop_points": 1.93, "interval95_points": [0.9, 2.95], "top1_agreement": 0.905,
            "size_vs_float32_tflite": 0.305}
    error = "--max-accuracy-drop 1.5 not certified on 1464 certification images (...) | fix: use 1.70"
    row = {"backbone": "mobilenet_v2", "input_size": 224, "int8": int8,
           "guarded": {"bound_points": 1.5, "certified": False, "error": error,
                       "smallest_certifiable_bound_points": 1.7012},
           "guarded_bias_correction": {"bound_points": 1.5, "certified": False, "error": "set too small"}}
    table = bench._markdown([row], 1.5).splitlines()
    assert table[table.index("| mobilenet_v2 | 224 | int8 | 2440 | +1.93 (+0.90 to +2.95) | 0.905 | 0.305x | - |")
                 + 1:][:2] == [
        "| mobilenet_v2 | 224 | guarded int8 | - | - | - | - | no: refused, smallest certifiable bound 1.70 "
        "(below the table) |",
        "| mobilenet_v2 | 224 | guarded int8 + bias correction | - | - | - | - | no: refused (below the table) |"]
    assert table[-2:] == [f"- mobilenet_v2 224 guarded int8: {error}",
                          "- mobilenet_v2 224 guarded int8 + bias correction: set too small"]


def test_latency_pruning_drops_are_gathered_per_seed_at_the_epochs_asked(tmp_path):
    import json

    numbers = _readme_numbers()
    for name, epochs, seed, drop in (("e8", 8, 0, -0.1), ("e8_s2", 8, 2, 1.2), ("", 4, None, 3.6)):
        result = {"fine_tune_epochs": epochs, "rows": [{"model": "x, classifier as fine-tuned", "drop_points": 9.0},
                                                       {"model": "x, classifier refit", "drop_points": drop,
                                                        "interval95_points": [drop - 1.6, drop + 1.6]}]}
        if seed is not None:
            result["seed"] = seed
        (tmp_path / f"sparse_refit_ablation{'_' + name if name else ''}.json").write_text(json.dumps(result))
    assert numbers.refit_drops_by_seed(8, tmp_path) == {0: (-0.1, -0.1 + 1.6), 2: (1.2, 1.2 + 1.6)}
    assert numbers.refit_drops_by_seed(4, tmp_path) == {0: (3.6, 3.6 + 1.6)}


def test_the_two_amd_epyc_machines_are_told_apart_by_their_recorded_features():
    label = _readme_numbers()._cpu_label
    assert label({"cpu": "AMD EPYC", "cpu_features": ["avx2", "avx512_vnni", "avx512f"]}) == "AMD EPYC with AVX-512/VNNI"
    assert label({"cpu": "AMD EPYC"}) == "AMD EPYC"  # the older one recorded no features (AVX2)
    assert label({"cpu": "Intel(R) Xeon(R) Processor", "cpu_features": ["avx512_vnni"]}) == "Intel Xeon"
    assert label({}) == ""


def test_latency_pruning_seeds_name_their_machines_only_where_they_differ(tmp_path):
    import json

    numbers = _readme_numbers()
    epyc = {"cpu": "AMD EPYC", "cpu_features": ["avx512_vnni"]}
    xeon = {"cpu": "Intel(R) Xeon(R) Processor"}
    for name, seed, machine in (("e12", 0, epyc), ("e12_s1", 1, xeon), ("e12_s2", 2, xeon)):
        result = {"fine_tune_epochs": 12, "seed": seed, "environment": {"machine": machine}, "rows": []}
        (tmp_path / f"sparse_refit_ablation_{name}.json").write_text(json.dumps(result))
    machines = numbers.refit_machines_by_seed(12, tmp_path)
    assert machines == {0: "AMD EPYC with AVX-512/VNNI", 1: "Intel Xeon", 2: "Intel Xeon"}
    assert numbers._seed_machines(machines) == " (seed 0 on an AMD EPYC with AVX-512/VNNI, seeds 1, 2 on an Intel Xeon)"
    assert numbers._seed_machines({1: "Intel Xeon", 2: "Intel Xeon"}) == ""
