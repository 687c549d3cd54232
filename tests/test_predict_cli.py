"""``edgekit predict`` end to end: JSON and table output, folders with broken files, labels/preprocessing options,
error exit codes, and no TensorFlow import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_runtime import LABELS, build_tiny_models

from edgekit.cli import main


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits_dir) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "runtime-models", digits_dir)


@pytest.fixture(scope="session")
def photo(tiny_models) -> Path:
    return Path(json.loads(tiny_models["test_images"].read_text())[0])


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(["predict", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_json_for_one_image_lists_top_k_labels_from_embedded_metadata(capsys, tiny_models, photo):
    code, out, _ = run_cli(capsys, str(tiny_models["float"]), str(photo), "--json", "--top-k", "3", "--threads", "1")
    assert code == 0
    report = json.loads(out)
    assert report["backend"] == "ai_edge_litert" and report["accelerator"] == "cpu"
    [result] = report["results"]
    assert result["path"] == str(photo) and len(result["top_k"]) == 3
    assert all(entry["label"] in LABELS for entry in result["top_k"])
    scores = [entry["score"] for entry in result["top_k"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_predict_folder_json_reports_broken_files_per_image(capsys, tiny_models, photo, tmp_path):
    Image.open(photo).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    code, out, _ = run_cli(capsys, str(tiny_models["onnx"]), str(tmp_path), "--json", "-k", "1")
    assert code == 0
    results = {Path(r["path"]).name: r for r in json.loads(out)["results"]}
    assert "broken.png" in results["broken.png"]["error"]
    assert results["good.png"]["top_k"][0]["label"] in LABELS


def test_predict_prints_a_table_by_default(capsys, tiny_models, photo):
    code, out, _ = run_cli(capsys, str(tiny_models["int8"].parent), str(photo), "-k", "2")
    assert code == 0
    assert "rank" in out and "digit-" in out and "model.tflite" in out


def test_model_without_metadata_needs_a_normalisation_and_options_supply_it(capsys, tiny_models, photo, tmp_path):
    code, _, err = run_cli(capsys, str(tiny_models["bare"]), str(photo))
    assert code == 4 and "no preprocessing" in err and "--preprocess torch|tf|0-1|raw" in err
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    expected = json.loads(run_cli(capsys, str(tiny_models["float"]), str(photo), "--json", "-k", "1")[1])
    code, out, _ = run_cli(capsys, str(tiny_models["bare"]), str(photo), "--labels", str(labels), "--size", "32",
                           "--mean", "127.5", "--std", "127.5", "--json", "-k", "1")
    assert code == 0
    assert json.loads(out)["results"][0]["top_k"] == expected["results"][0]["top_k"]
    # the size comes from the model and a preset replaces mean/std; without labels the outputs are numbered
    code, out, _ = run_cli(capsys, str(tiny_models["bare"]), str(photo), "--preprocess", "tf", "--json", "-k", "1")
    assert code == 0
    [top] = json.loads(out)["results"][0]["top_k"]
    assert top == {"label": f"class_{LABELS.index(expected['results'][0]['top_k'][0]['label'])}",
                   "score": expected["results"][0]["top_k"][0]["score"]}
    code, _, err = run_cli(capsys, str(tiny_models["bare"]), str(photo), "--preprocess", "caffe")
    assert code == 2 and "unknown --preprocess 'caffe'" in err and "torch, tf, 0-1, raw" in err
    code, _, err = run_cli(capsys, str(tiny_models["bare"]), str(photo), "--preprocess", "tf", "--mean", "1")
    assert code == 2 and "--preprocess and --mean/--std" in err


def test_bad_options_and_missing_devices_exit_with_their_codes(capsys, tiny_models, photo, tmp_path):
    code, _, err = run_cli(capsys, str(tiny_models["float"]), str(photo), "--accelerator", "edgetpu")
    assert code == 7 and "libedgetpu.so.1" in err
    code, _, err = run_cli(capsys, str(tiny_models["float"]), str(photo), "--accelerator", "tpu")
    assert code == 2 and "unknown --accelerator" in err
    code, _, err = run_cli(capsys, str(tiny_models["float"]), str(tmp_path / "missing.jpg"))
    assert code == 3 and "missing.jpg" in err
    code, _, err = run_cli(capsys, str(tiny_models["bare"]), str(photo), "--mean", "1,2")
    assert code == 2 and "--mean" in err


def test_a_model_that_fails_to_load_leaves_no_prediction_log(tiny_models, photo, tmp_path):
    """The console entry as a user runs it: one error line naming the model, a non-zero exit, and no log file."""
    broken = tmp_path / "broken.tflite"
    data = tiny_models["float"].read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    log = tmp_path / "logs" / "preds.sqlite"
    proc = subprocess.run([sys.executable, "-m", "edgekit", "predict", str(broken), str(photo), "--log", str(log)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "broken.tflite" in proc.stderr
    assert not log.exists() and not log.parent.exists()
    code = subprocess.run([sys.executable, "-m", "edgekit", "predict", str(tiny_models["float"]), str(photo), "--log",
                           str(log), "--json"], capture_output=True, text=True, timeout=120).returncode
    assert code == 0 and log.is_file()  # the same command with a model that loads writes the log


def test_cli_predict_never_imports_tensorflow(tiny_models, photo):
    script = ("import sys, json\nfrom edgekit.cli import main\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras'))))")
    proc = subprocess.run([sys.executable, "-c", script, "predict", str(tiny_models["int8"]), str(photo), "--json"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert json.loads(proc.stdout[: proc.stdout.rindex("}") + 1])["results"][0]["top_k"]


@pytest.mark.parametrize("width", [80, 120])
def test_predict_tables_fit_the_terminal_with_scores_whole_and_one_line_per_broken_file(
        capsys, monkeypatch, tiny_models, photo, tmp_path, width):
    folder = tmp_path / "a-rather-long-folder-name-for-photos-taken-on-the-production-line" / "camera-03"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.open(photo).save(folder / f"frame-{i:04d}-with-a-long-descriptive-file-name.png")
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")
    model = str(tiny_models["int8"].parent)
    monkeypatch.setenv("COLUMNS", str(width))
    for target in (photo, folder):
        _, expected, _ = run_cli(capsys, model, str(target), "--json", "-k", "3")
        code, out, _ = run_cli(capsys, model, str(target), "-k", "3")
        assert code == 0
        lines = out.splitlines()
        assert all(len(line.rstrip()) <= width for line in lines), out
        for result in json.loads(expected)["results"]:
            if "error" in result:
                assert sum(line.startswith(f"{result['path']}: error:"[:width - 1]) for line in lines) == 1, out
                continue
            score = f"{result['top_k'][0]['score']:.4f}"  # top-1 label and score whole on one line
            assert any(f" {result['top_k'][0]['label']} " in f" {line} " and f" {score}" in line for line in lines), out
