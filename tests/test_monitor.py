"""Monitoring on the digits: the SQLite prediction log (rows, two writers, a killed writer, rotation),
reference profiles, the drift report and its CLI, and the light statistics against scipy."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_bad_inputs import REPO, assert_one_clear_error, run_edgekit
from test_runtime import LABELS, build_tiny_models

from edgekit.artifacts import sha256_file
from edgekit.data import calibration_sample, load_image, load_splits, scan_image_folder
from edgekit.monitoring import monitor, write_reference_profile
from edgekit.monitoring import stats
from edgekit.monitoring.reference import MAX_INPUT_IMAGES
from edgekit.runtime import Predictor
from edgekit.runtime.predlog import (INPUT_FEATURES, SOURCE_FEATURES, PredictionLog, image_statistics, jpeg_quality,
                                     read_log, source_properties)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits_dir) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "runtime-models", digits_dir)


@pytest.fixture(scope="session")
def profiled_int8(tmp_path_factory, tiny_models, digits_dir) -> Path:
    """A copy of the tiny int8 artifact with a reference profile from the digits' train/ (held out: a split of it)."""
    folder = tmp_path_factory.mktemp("monitor") / "int8"
    shutil.copytree(tiny_models["int8"].parent, folder)
    write_reference_profile(folder, train_data=digits_dir / "train")
    return folder


@pytest.fixture(scope="session")
def unseen_digits(digits_dir) -> list[Path]:
    return scan_image_folder(digits_dir / "test").paths


def _log_predictions(model: Path, log: Path, images) -> None:
    predictor = Predictor(model, threads=1, log=log)
    for image in images:
        predictor.predict(image, top_k=3)
    predictor.log.close()


def test_each_prediction_is_one_row_with_model_hash_scores_and_input_statistics(tmp_path, profiled_int8,
                                                                                 unseen_digits):
    log = tmp_path / "log.sqlite"
    predictor = Predictor(profiled_int8, threads=1, log=PredictionLog(log, sample_images=1.0, seed=0))
    results = [predictor.predict(path, top_k=3) for path in unseen_digits[:5]]
    array = load_image(unseen_digits[5])
    results.append(predictor.predict(array, top_k=3))
    rows = read_log(log)
    assert len(rows["time"]) == 6 and rows["source"][:5] == [str(p) for p in unseen_digits[:5]] and rows["source"][5] is None
    assert set(rows["model_sha256"]) == {sha256_file(profiled_int8 / "model.tflite")}
    for i, ranked in enumerate(results):
        assert json.loads(rows["labels"][i]) == [label for label, _ in ranked] and rows["top1"][i] == ranked[0][0]
        assert json.loads(rows["scores"][i]) == pytest.approx([score for _, score in ranked], abs=1e-6)
        assert rows["confidence"][i] == pytest.approx(ranked[0][1], abs=1e-6)
        assert rows["margin"][i] == pytest.approx(ranked[0][1] - ranked[1][1], abs=1e-6)
    assert (rows["width"][5], rows["height"][5]) == (array.shape[1], array.shape[0])
    expected = image_statistics(load_image(unseen_digits[0], (32, 32)))
    assert [rows[name][0] for name in INPUT_FEATURES[SOURCE_FEATURES:]] == pytest.approx(expected)
    assert np.all(rows["latency_ms"] > 0)
    with sqlite3.connect(log) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        blobs = db.execute("SELECT jpeg FROM samples ORDER BY prediction_id").fetchall()
    assert len(blobs) == 6
    import io

    assert Image.open(io.BytesIO(blobs[0][0])).size == (32, 32)


def test_image_statistics_follow_brightness_contrast_colour_and_blur():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(64, 64, 3)).astype(np.uint8)
    base = dict(zip(INPUT_FEATURES[SOURCE_FEATURES:], image_statistics(image)))
    dark = dict(zip(INPUT_FEATURES[SOURCE_FEATURES:], image_statistics((image // 2).astype(np.uint8))))
    blurred = np.asarray(Image.fromarray(image).filter(__import__("PIL.ImageFilter").ImageFilter.GaussianBlur(2)))
    soft = dict(zip(INPUT_FEATURES[SOURCE_FEATURES:], image_statistics(blurred)))
    grey = dict(zip(INPUT_FEATURES[SOURCE_FEATURES:], image_statistics(np.repeat(image[..., :1], 3, axis=2))))
    assert dark["brightness"] == pytest.approx(base["brightness"] / 2, rel=0.02)
    assert dark["contrast"] == pytest.approx(base["contrast"] / 2, rel=0.02)
    assert soft["sharpness"] < base["sharpness"] - 1 and grey["saturation"] == 0 < base["saturation"]


def test_jpeg_quality_is_estimated_from_the_quantization_tables(tmp_path):
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(64, 64, 3)).astype(np.uint8))
    for quality in (10, 30, 50, 70, 90):
        photo.save(tmp_path / f"q{quality}.jpg", quality=quality)
        with Image.open(tmp_path / f"q{quality}.jpg") as opened:
            assert jpeg_quality(opened.quantization) == pytest.approx(quality, abs=2)
    photo.save(tmp_path / "lossless.png")
    assert source_properties(tmp_path / "lossless.png") == (64, 64, None)
    assert source_properties(tmp_path / "q30.jpg")[2] == pytest.approx(30, abs=2)
    assert source_properties(np.zeros((5, 7, 3), np.uint8)) == (7, 5, None)


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from edgekit.runtime.predlog import PredictionLog
    log = PredictionLog(sys.argv[1], max_mb=64)
    pixels = np.full((1, 8, 8, 3), 100, np.uint8)
    probabilities = np.array([[0.7, 0.2, 0.1]])
    for i in range(int(sys.argv[2])):
        log.record(["x"], pixels, probabilities, [[("a", 0.7), ("b", 0.2)]], model_sha256=sys.argv[3], seconds=0.001)
        print(i + 1, flush=True)
""")


def _writer(log: Path, rows: int, tag: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(rows), tag], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_two_writing_processes_lose_no_row(tmp_path):
    log = tmp_path / "shared.sqlite"
    writers = [_writer(log, 300, tag) for tag in ("first", "second")]
    for writer in writers:
        writer.communicate(timeout=120)
        assert writer.returncode == 0
    rows = read_log(log)
    assert sorted(rows["model_sha256"]).count("first") == 300 and rows["model_sha256"].count("second") == 300
    assert len(set(rows["id"].tolist())) == 600


def test_a_writer_killed_mid_write_keeps_every_committed_row(tmp_path):
    log = tmp_path / "killed.sqlite"
    writer = _writer(log, 1_000_000, "victim")
    committed = 0
    while committed < 400:
        committed = int(writer.stdout.readline())
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    with sqlite3.connect(log) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(read_log(log)["time"]) >= committed
    with PredictionLog(log) as reopened:  # and the log takes new rows after the crash
        reopened.record(["x"], np.zeros((1, 8, 8, 3), np.uint8), np.array([[1.0, 0.0]]), [[("a", 1.0), ("b", 0.0)]],
                        model_sha256="after", seconds=0.001)
    assert read_log(log)["model_sha256"][-1] == "after"


def test_size_bound_rotates_the_oldest_rows_out(tmp_path):
    log = tmp_path / "bounded.sqlite"
    rng = np.random.default_rng(0)
    with PredictionLog(log, max_mb=0.25, sample_images=1.0, seed=0) as bounded:
        for _ in range(600):  # ~5 KB of noisy JPEG each: ~3 MB unbounded
            pixels = rng.integers(0, 256, size=(1, 48, 48, 3)).astype(np.uint8)
            bounded.record(["x"], pixels, np.array([[0.9, 0.1]]), [[("a", 0.9), ("b", 0.1)]], model_sha256="m",
                           seconds=0.001)
    rows = read_log(log)
    assert 0 < len(rows["time"]) < 600 and rows["id"][-1] == 600  # the newest row is kept, the oldest went
    with sqlite3.connect(log) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        orphans = db.execute("SELECT COUNT(*) FROM samples WHERE prediction_id NOT IN (SELECT id FROM predictions)")
        assert orphans.fetchone()[0] == 0
    assert log.stat().st_size <= 0.25 * 1024 * 1024 * 1.5


def test_reference_profile_holds_inputs_scores_and_class_counts(profiled_int8, digits_dir):
    profile = json.loads((profiled_int8 / "reference_profile.json").read_text())
    assert profile["model_sha256"] == sha256_file(profiled_int8 / "model.tflite") and profile["labels"] == LABELS
    train_images = len(scan_image_folder(digits_dir / "train").items)
    assert set(profile["input"]["values"]) == set(INPUT_FEATURES)
    assert 0.7 * train_images < profile["input"]["images"] < train_images  # the training part of an 80/20 split
    scores = profile["scores"]
    assert len(scores["values"]["confidence"]) == scores["images"] == sum(scores["predicted_counts"].values())
    finetune_split = load_splits(digits_dir / "train", seed=0)  # what finetune holds out by default
    assert set(scores["heldout_paths"]) == {str(p) for p in finetune_split.val.paths}
    assert all(0 <= v <= 1 for v in scores["values"]["entropy"])


def test_unshifted_digits_raise_no_drift_and_halved_brightness_is_named(tmp_path, profiled_int8, unseen_digits):
    same, dark = tmp_path / "same.sqlite", tmp_path / "dark.sqlite"
    _log_predictions(profiled_int8, same, unseen_digits[::2])
    _log_predictions(profiled_int8, dark, [(load_image(p) // 2).astype(np.uint8) for p in unseen_digits[1::2]])
    calm = monitor(log=same, model=profiled_int8)
    assert calm["summary"]["drift"] is False, calm["summary"]
    shifted = monitor(log=dark, model=profiled_int8, out_dir=tmp_path / "report", fail_if=("drifted_signals>0",))
    assert "brightness" in shifted["summary"]["drifted_signals"]
    assert shifted["features"]["brightness"]["current_mean"] == pytest.approx(
        shifted["features"]["brightness"]["reference_mean"] / 2, rel=0.05)
    assert shifted["gates"][0]["failed"] and not calm["features"]["brightness"]["drifted"]
    report = shifted["report"]
    assert json.loads(Path(report["json"]).read_text())["summary"]["drift"] is True
    assert "DRIFT" in Path(report["markdown"]).read_text() and Path(report["html"]).is_file()


def test_monitor_report_in_chromium_fits_1280_px_with_the_verdict_and_plot_first(tmp_path, profiled_int8,
                                                                                  unseen_digits, render_report):
    from conftest import WINDOW_HEIGHT, assert_fits_and_plot_renders

    dark = tmp_path / "dark.sqlite"
    _log_predictions(profiled_int8, dark, [(load_image(p) // 2).astype(np.uint8) for p in unseen_digits[:120]])
    result = monitor(log=dark, model=profiled_int8, out_dir=tmp_path / "report")
    probe, dom, screenshot = render_report(Path(result["report"]["html"]), "monitor-report")
    assert_fits_and_plot_renders(probe, screenshot)
    assert probe["summary"][0]["top"] < probe["images"][0]["top"] < probe["headings"][0]["top"] < WINDOW_HEIGHT * 3
    assert "brightness" in dom and "DRIFT" in dom.upper() and probe["tables"]


def test_monitor_cli_writes_reports_gates_exit_8_and_bad_options_are_one_line(tmp_path, profiled_int8, unseen_digits):
    log = tmp_path / "cli.sqlite"
    images = tmp_path / "images"
    images.mkdir()
    for path in unseen_digits[:80]:
        shutil.copy(path, images / f"{path.parent.name}-{path.name}")
    proc = run_edgekit("predict", profiled_int8, images, "--log", log, "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(read_log(log)["time"]) == 80
    proc = run_edgekit("monitor", log, "--model", profiled_int8, "--out", tmp_path / "out", "--json",
                       "--threshold", "psi=0.3", "--fail-if", "latency_p99_ms>100000")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["thresholds"]["psi"] == 0.3 and result["rows"] == 80
    assert {"monitor.json", "monitor.md", "monitor.html", "drift.png"} <= {p.name for p in (tmp_path / "out").iterdir()}
    gated = run_edgekit("monitor", log, "--model", profiled_int8, "--fail-if", "rows>10")
    assert_one_clear_error(gated, 8, "rows>10")
    assert_one_clear_error(run_edgekit("monitor", log, "--model", profiled_int8, "--fail-if", "psi_colour>1"),
                           2, "--fail-if", "psi_brightness")
    assert_one_clear_error(run_edgekit("monitor", log, "--model", profiled_int8, "--threshold", "psi=-1"),
                           2, "--threshold")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(profiled_int8 / "model.tflite", bare / "model.tflite")
    assert_one_clear_error(run_edgekit("monitor", log, "--model", bare / "model.tflite"), 4, "reference_profile.json",
                           "--reference")
    assert_one_clear_error(run_edgekit("monitor", tmp_path / "missing.sqlite", "--model", profiled_int8), 2,
                           "missing.sqlite")


def test_a_foreign_model_is_monitored_against_an_image_folder(tmp_path, tiny_models, unseen_digits):
    foreign = tmp_path / "foreign" / "model.tflite"  # no manifest: labels and preprocessing embedded in the file
    foreign.parent.mkdir()
    shutil.copy(tiny_models["float"], foreign)
    reference = tmp_path / "reference-images"
    reference.mkdir()
    for path in unseen_digits[::2]:  # images like the ones the model should see, that it never trained on
        shutil.copy(path, reference / f"{path.parent.name}-{path.name}")
    log = tmp_path / "foreign.sqlite"
    _log_predictions(foreign, log, unseen_digits[1::2])
    result = monitor(log=log, model=foreign, reference=reference)
    assert result["rows"] == len(unseen_digits[1::2]) and "predicted_class" in result["prediction"]
    assert result["summary"]["drift"] is False, result["summary"]
    darker = tmp_path / "darker.sqlite"
    _log_predictions(foreign, darker, [(load_image(p) // 2).astype(np.uint8) for p in unseen_digits[1::2]])
    assert "brightness" in monitor(log=darker, model=foreign, reference=reference)["summary"]["drifted_signals"]


def test_monitor_and_logging_run_without_scipy_tensorflow_or_matplotlib(tmp_path, profiled_int8, unseen_digits):
    """The light [runtime] install: block the heavy modules and log + monitor in a fresh interpreter."""
    script = textwrap.dedent(f"""
        import sys
        for name in ("scipy", "tensorflow", "matplotlib", "tf_keras", "sklearn"):
            sys.modules[name] = None
        from edgekit.runtime import Predictor
        from edgekit.monitoring import monitor
        predictor = Predictor({str(profiled_int8)!r}, threads=1, log={str(tmp_path / 'light.sqlite')!r})
        for path in {[str(p) for p in unseen_digits[:60]]!r}:
            predictor.predict(path)
        result = monitor(log={str(tmp_path / 'light.sqlite')!r}, model={str(profiled_int8)!r},
                         out_dir={str(tmp_path / 'light')!r})
        print(sorted(result["report"]), result["rows"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['json', 'markdown'] 60"


def test_light_statistics_match_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for n, m, shift in ((200, 1000, 0.0), (200, 800, 0.3), (50, 70, 1.0)):
        a, b = rng.normal(size=m), rng.normal(shift, 1.2, size=n)
        statistic, pvalue = stats.ks_2samp(a, b, use_scipy=False)
        expected = scipy_stats.ks_2samp(a, b, method="asymp")
        assert statistic == pytest.approx(expected.statistic, abs=1e-12)
        root = np.sqrt(n * m / (n + m))
        assert pvalue == pytest.approx(scipy_stats.kstwobign.sf(statistic * (root + 0.12 + 0.11 / root)), rel=1e-9)
        assert pvalue == pytest.approx(expected.pvalue, rel=0.1)  # scipy: exact-n distribution at round(n*m/(n+m))
        assert stats.wasserstein(a, b) == pytest.approx(scipy_stats.wasserstein_distance(a, b), rel=1e-9)
    for value, dof in ((0.5, 1), (3.0, 9), (25.0, 9), (200.0, 9), (12.0, 40), (1e-3, 3)):
        assert stats.chi2_sf(value, dof, use_scipy=False) == pytest.approx(scipy_stats.chi2.sf(value, dof),
                                                                           rel=1e-9, abs=1e-300)
    reference, current = np.array([40, 38, 41, 0, 39]), np.array([10, 30, 25, 0, 12])
    statistic, pvalue, dof = stats.chi2_contingency(reference, current, use_scipy=False)
    expected = scipy_stats.chi2_contingency(np.vstack([reference, current])[:, [0, 1, 2, 4]], correction=False)
    assert (statistic, dof) == (pytest.approx(expected.statistic), expected.dof)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    z_p = stats.two_proportion_pvalue(30, 200, 20, 300)
    pooled = 50 / 500
    z = (30 / 200 - 20 / 300) / np.sqrt(pooled * (1 - pooled) * (1 / 200 + 1 / 300))
    assert z_p == pytest.approx(2 * scipy_stats.norm.sf(z), rel=1e-12)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=5000)
    values = [stats.psi(reference, rng.normal(shift, 1, size=5000)) for shift in (0.0, 0.25, 0.5, 1.0)]
    assert values[0] < 0.01 and values == sorted(values) and values[-1] > 0.5
    # by hand: two bins of equal reference mass, current 80/20 -> (0.8-0.5)ln(1.6) + (0.2-0.5)ln(0.4)
    assert stats.psi(np.array([0.0, 1.0]), np.array([0.0] * 8 + [1.0] * 2), bins=2) == pytest.approx(
        0.3 * np.log(1.6) - 0.3 * np.log(0.4))


@pytest.mark.slow
def test_finetune_and_export_write_reference_profiles_the_export_reusing_its_parents(tmp_path, tiny_float_artifact,
                                                                                     digits_dir):
    from edgekit import api

    parent = json.loads((tiny_float_artifact.directory / "reference_profile.json").read_text())
    split = load_splits(digits_dir / "train", seed=0)
    assert parent["model_sha256"] == tiny_float_artifact.manifest.sha256
    assert parent["input"]["images"] == len(calibration_sample(split.train, MAX_INPUT_IMAGES, seed=0).items)
    assert set(parent["scores"]["heldout_paths"]) == {str(p) for p in split.val.paths}
    exported = api.export(model=tiny_float_artifact.directory, target="tflite", out_dir=tmp_path / "tflite")
    child = json.loads((exported.directory / "reference_profile.json").read_text())
    assert child["model_sha256"] == sha256_file(exported.path) != parent["model_sha256"]
    assert child["input"] == parent["input"] and child["scores"]["heldout_paths"] == parent["scores"]["heldout_paths"]
    # the float .tflite scores the held-out images like its Keras parent
    assert np.allclose(child["scores"]["values"]["confidence"], parent["scores"]["values"]["confidence"], atol=1e-3)
