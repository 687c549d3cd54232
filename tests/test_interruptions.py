"""SIGINT/SIGTERM and a full disk hitting real ``edgekit`` processes mid-work: exit cleanly, lose nothing, rerun.

Each interrupted run must exit 130, leave no half-written model or manifest and no ``.edgekit-tmp-*`` file,
leave its private TMPDIR empty (scratch folders are cleaned too), keep every earlier output byte for byte,
and a plain rerun must complete. A full disk is simulated with ``RLIMIT_FSIZE`` in the child (writes past
the limit fail with EFBIG), and with a real, tiny tmpfs where this machine lets the tests mount one.
(SIGINT during fine-tuning followed by ``--resume`` is covered in test_finetune.py.)
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import sha256_tree
from test_bad_inputs import REPO, assert_one_clear_error, run_edgekit

from edgekit.artifacts import MANIFEST_NAME, TEMP_PREFIX, load_artifact

pytestmark = pytest.mark.slow  # signals real subprocesses mid-run (~3 min): runs in CI after the fast suite

START_TIMEOUT_S = 240


def _env(tmpdir: Path, *, quiet: bool = True) -> dict[str, str]:
    tmpdir.mkdir(parents=True, exist_ok=True)
    return os.environ | {"EDGEKIT_QUIET": "1" if quiet else "", "TMPDIR": str(tmpdir), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _has_child_running(pid: int, marker: str) -> bool:
    """Whether process ``pid`` has a child whose command line contains ``marker`` (Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and marker in (stat.parent / "cmdline").read_bytes().decode(errors="replace"):
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def interrupt(argv: list[str], sig: signal.Signals, ready: Callable[[subprocess.Popen, str], bool],
              env: dict[str, str]) -> tuple[int, str]:
    """Start ``edgekit argv``, send ``sig`` once ``ready(process, stderr so far)`` holds; return (exit, stderr)."""
    process = subprocess.Popen([sys.executable, "-m", "edgekit", *map(str, argv)], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline and process.poll() is None and not ready(process, "".join(lines)):
        time.sleep(0.1)
    assert process.poll() is None, f"finished (exit {process.returncode}) before it could be interrupted:\n{lines}"
    assert ready(process, "".join(lines)), f"never reached the interruption point:\n{''.join(lines)}"
    process.send_signal(sig)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running 120 s after {sig.name}")
    reader.join(timeout=10)
    return process.returncode, "".join(lines)


def assert_clean_interruption(code: int, stderr: str, *, out: Path, tmpdir: Path) -> None:
    assert code == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert "interrupted: nothing half-written was left behind" in stderr
    assert not list(out.rglob(f"{TEMP_PREFIX}*"))
    # Libraries keep small state files there (e.g. a 51-byte ``.ses`` session id); scratch is folders/edgekit-*.
    leftovers = [p for p in tmpdir.iterdir() if p.is_dir() or p.name.startswith(("edgekit", "tmp"))]
    assert not leftovers, f"scratch left in TMPDIR: {leftovers}"


@pytest.fixture
def parent(tiny_float_artifact, tmp_path) -> Path:
    """A private copy of the finetuned float artifact (model.keras + manifest.json)."""
    folder = tmp_path / "float"
    shutil.copytree(tiny_float_artifact.directory, folder, ignore=shutil.ignore_patterns("cache", "checkpoints"))
    return folder


@pytest.fixture(scope="module")
def fp32_export(tiny_float_artifact, tmp_path_factory) -> Path:
    """An earlier, successful ``edgekit export --target onnx`` (fp32), copied into each test's output folder."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    done = run_edgekit("export", tiny_float_artifact.directory, "--target", "onnx", "--out", out, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_export_onnx_interrupted_during_int8_calibration_keeps_the_earlier_export(sig, parent, fp32_export,
                                                                                   digits_dir, tmp_path):
    out = tmp_path / "onnx"
    shutil.copytree(fp32_export, out)
    before, parent_before = sha256_tree(out), sha256_tree(parent)
    argv = ["export", parent, "--target", "onnx", "--int8", "--calibration", digits_dir / "train", "--out", out]
    tmpdir = tmp_path / "tmp"
    code, stderr = interrupt(argv, sig, lambda p, seen: "calibrating int8 ranges" in seen,
                             _env(tmpdir, quiet=False))
    assert_clean_interruption(code, stderr, out=out, tmpdir=tmpdir)
    assert sha256_tree(out) == before and sha256_tree(parent) == parent_before

    rerun = run_edgekit(*argv, env={"TMPDIR": str(tmpdir)}, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    artifact = load_artifact(out)
    assert artifact.manifest.options["int8"] is True and artifact.manifest.quantization.mode == "static-qdq"
    assert sha256_tree(parent) == parent_before


@pytest.mark.parametrize("sig", [signal.SIGTERM], ids=["SIGTERM"])
def test_compress_interrupted_during_conversion_writes_no_variant_and_rerun_completes(sig, parent, digits_dir,
                                                                                       tmp_path):
    out = tmp_path / "compressed"
    earlier = out / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "notes.txt").write_text("an earlier output in the same --out folder\n")
    before, parent_before = sha256_tree(out), sha256_tree(parent)
    argv = ["compress", parent, "--float16", "--int8", "--calibration", digits_dir / "train", "--out", out]
    tmpdir = tmp_path / "tmp"
    code, stderr = interrupt(argv, sig, lambda p, seen: _has_child_running(p.pid, "spawn_main"),
                             _env(tmpdir))
    assert_clean_interruption(code, stderr, out=out, tmpdir=tmpdir)
    assert sha256_tree(out) == before and sha256_tree(parent) == parent_before
    assert not (out / "int8").exists() and not (out / "float16").exists()

    rerun = run_edgekit(*argv, env={"TMPDIR": str(tmpdir)}, timeout=400)
    assert rerun.returncode == 0, rerun.stderr
    for variant in ("float16", "int8"):
        assert load_artifact(out / variant).manifest.format == "tflite"
    assert (earlier / "notes.txt").is_file()


def test_sigterm_during_fine_tuning_keeps_the_earlier_model_and_resume_completes(digits_dir, tmp_path):
    out = tmp_path / "run"
    base = ["finetune", digits_dir / "train", "--out", out, "--backbone", "mobilenet_v2", "--weights", "imagenet",
            "--input-size", "32", "--augment-copies", "0", "--early-stopping", "0"]
    first = run_edgekit(*base, "--epochs", "2", timeout=300)
    assert first.returncode == 0, first.stderr
    earlier = {name: h for name, h in sha256_tree(out).items() if name in ("model.keras", MANIFEST_NAME)}
    assert len(earlier) == 2

    tuned = [*base, "--epochs", "3", "--fine-tune-layers", "10", "--fine-tune-epochs", "4", "--fine-tune-lr", "1e-4"]
    tmpdir = tmp_path / "tmp"
    code, stderr = interrupt(tuned, signal.SIGTERM, lambda p, seen: any((out / "checkpoints").glob("*.json")),
                             _env(tmpdir))
    assert_clean_interruption(code, stderr, out=out, tmpdir=tmpdir)
    now = sha256_tree(out)
    assert {name: now.get(name) for name in earlier} == earlier, "the earlier model or manifest changed"

    resumed = run_edgekit(*tuned, "--resume", env={"TMPDIR": str(tmpdir), "EDGEKIT_QUIET": ""}, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming fine-tuning after epoch" in resumed.stderr
    history = load_artifact(out).manifest.extra["history"]["fine_tune"]
    assert len(history["loss"]) == 4


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG as an OSError instead of a core dump
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _run_limited(argv: list, limit: int, tmpdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, argv)], capture_output=True, text=True,
                          env=_env(tmpdir), cwd=REPO, timeout=400, preexec_fn=_limit_file_size(limit))


@pytest.mark.parametrize("command", ["export-onnx", "compress", "finetune"])
def test_file_size_limit_is_one_output_error_and_earlier_outputs_survive(command, parent, fp32_export, digits_dir,
                                                                         tmp_path):
    out = tmp_path / "out"
    shutil.copytree(fp32_export, out / "earlier")
    argv = {"export-onnx": ["export", parent, "--target", "onnx", "--out", out / "earlier"],
            "compress": ["compress", parent, "--int8", "--calibration", digits_dir / "train", "--out", out],
            "finetune": ["finetune", digits_dir / "train", "--backbone", "mobilenet_v2", "--input-size", "32",
                         "--epochs", "1", "--out", out / "earlier"]}[command]
    before, parent_before = sha256_tree(out), sha256_tree(parent)
    tmpdir = tmp_path / "tmp"
    proc = _run_limited(argv, 200_000, tmpdir)
    line = assert_one_clear_error(proc, 9)
    assert any(reason in line for reason in ("File too large", "requested and")), line
    after = sha256_tree(out)
    assert {name: after.get(name) for name in before} == before, "an earlier output was changed or lost"
    assert sha256_tree(parent) == parent_before
    assert not list(out.rglob(f"{TEMP_PREFIX}*"))


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 3 MiB tmpfs (a disk that fills up), where this machine lets the tests mount one."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
                              capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command here: RLIMIT_FSIZE cases cover a full disk")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): RLIMIT_FSIZE cases cover a full disk")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], capture_output=True, timeout=30)


def test_full_disk_export_is_one_no_space_error_and_keeps_what_was_there(tiny_tmpfs, parent, tmp_path):
    earlier = tiny_tmpfs / "earlier.txt"
    earlier.write_bytes(b"x" * 100_000)
    out = tiny_tmpfs / "onnx"
    proc = run_edgekit("export", parent, "--target", "onnx", "--out", out, timeout=300)
    assert_one_clear_error(proc, 9, "no space left on the device", "model.onnx")
    assert earlier.read_bytes() == b"x" * 100_000
    assert not (out / "model.onnx").exists() and not (out / MANIFEST_NAME).exists()
    assert not list(tiny_tmpfs.rglob(f"{TEMP_PREFIX}*"))
