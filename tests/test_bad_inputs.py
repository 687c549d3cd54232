"""Bad inputs driven through the real CLI: each must end in one clear error line, its exit code, and nothing lost.

Every case runs ``python -m edgekit ...`` in a fresh process against a workspace holding its inputs and an
earlier, valid output folder (``prev``). The workspace is hashed before and after: a failing command may
not change, add or remove a single file in it. Cases are one table so the count is visible.
"""

from __future__ import annotations

import collections
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import sha256_tree
from test_runtime import build_tiny_models

from edgekit.artifacts import Manifest, Preprocessing, sha256_file, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
DIGIT_LABELS = [str(i) for i in range(10)]  # the class folders of ``digits_dir``
PRE = Preprocessing(size=(32, 32), mean=(127.5,) * 3, std=(127.5,) * 3)
CLI_TIMEOUT_S = 120


def run_edgekit(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    """The real CLI in a fresh interpreter, as a user would run it."""
    full_env = os.environ | {"EDGEKIT_QUIET": "1", "TF_CPP_MIN_LOG_LEVEL": "3"} | (env or {})
    full_env.pop("EDGEKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)


def assert_one_clear_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit ``code``, no traceback, exactly one ``error:`` line naming every needle and carrying a fix."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{proc.stderr}"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert "(fix:" in lines[0], lines[0]
    return lines[0]


def write_manifest_beside(model: Path, fmt: str, *, labels: list[str] = DIGIT_LABELS) -> Path:
    """An edgekit manifest for ``model`` (its real sha256), so commands that need one reach the model bytes."""
    manifest = Manifest(format=fmt, artifact=model.name, stage="test", labels=list(labels),
                        preprocessing=PRE.to_dict(), sha256=sha256_file(model), size_bytes=model.stat().st_size)
    write_json_atomic(model.parent / "manifest.json", manifest.to_dict())
    return model.parent


def keras_zip(config: dict, members: tuple[tuple[str, bytes], ...] = ()) -> bytes:
    """A ``.keras`` (Keras v3 zip) with the given config.json and extra members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": "2.21.0"}))
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits_dir) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "runtime-models", digits_dir)


@pytest.fixture(scope="session")
def lambda_keras(tmp_path_factory) -> tuple[Path, Path]:
    """A real tf_keras .keras model whose Lambda layer creates a sentinel file when its code runs."""
    from edgekit._tf import import_tf

    folder = tmp_path_factory.mktemp("lambda")
    sentinel = folder / "LAMBDA_RAN"
    _, keras = import_tf()
    inputs = keras.Input((32, 32, 3), batch_size=1)
    marked = keras.layers.Lambda(eval(f"lambda x: (open({str(sentinel)!r}, 'w').close(), x)[1]"))(inputs)
    # Zero weights and a bias on class 3: the model always answers "3", so its accuracy is known exactly.
    always_three = keras.layers.Dense(10, activation="softmax", kernel_initializer="zeros",
                                      bias_initializer=keras.initializers.Constant([0, 0, 0, 5] + [0] * 6))
    outputs = always_three(keras.layers.GlobalAveragePooling2D()(marked))
    path = folder / "model.keras"
    keras.Model(inputs, outputs).save(str(path), save_format="keras")
    sentinel.unlink(missing_ok=True)  # building the graph ran the lambda once; loading must not
    return path, sentinel


@dataclass
class Workspace:
    """Where one case runs: its inputs, an earlier valid output folder ``prev``, and shared real models."""

    root: Path
    models: dict[str, Path]
    digits: Path
    lambda_keras: tuple[Path, Path]

    @property
    def prev(self) -> Path:
        return self.root / "prev"

    @property
    def image(self) -> Path:
        return next((self.digits / "test" / "0").glob("*.png"))

    def file(self, name: str, data: bytes) -> Path:
        path = self.root / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def artifact(self, name: str, data: bytes, fmt: str) -> Path:
        """A model file with a valid manifest beside it (hash included), in its own folder."""
        folder = self.root / "in" / f"art-{Path(name).stem}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        return write_manifest_beside(folder / name, fmt)

    def sentinel(self) -> Path:
        return self.root / "SENTINEL"


def _random(n: int, seed: int) -> bytes:
    return bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8))


def _truncated(path: Path, fraction: float = 0.5) -> bytes:
    data = path.read_bytes()
    return data[: int(len(data) * fraction)]


def _lfs_pointer() -> bytes:
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 1234567\n"


def _h5_model(path: Path) -> bytes:
    """A real HDF5 file with a model_config attribute (what tf_keras writes), built with h5py."""
    import h5py

    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
        handle.create_dataset("model_weights/dense/kernel", data=np.ones((64, 64), np.float32))
    return path.read_bytes()


def _bomb() -> bytes:
    """A .keras whose weights member inflates 64 MiB of zeros from a few hundred bytes (bzip2)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {}}))
        with archive.open("model.weights.h5", "w", force_zip64=True) as member:
            for _ in range(64):
                member.write(bytes(1 << 20))
    return buffer.getvalue()


def _evil_pth(path: Path, sentinel: Path) -> Path:
    """A legacy .pth whose state dict holds ``os.system('touch SENTINEL')`` instead of a tensor."""
    from test_torch_pickle import _Global, write_legacy_pth

    class Evil:
        def __reduce__(self):
            return _Global("os", "system"), (f"touch {sentinel}",)

    return write_legacy_pth(path, collections.OrderedDict(weight=Evil()), {})


def _external(ws: Workspace, location: str) -> Path:
    from test_model_safety import _external_data_model

    return _external_data_model(ws.root / "in" / "ext", location)


def _recipe(ws: Workspace, text: str) -> Path:
    return ws.file("recipe.yaml", text.replace("SENTINEL", str(ws.sentinel())).encode())


def _ssh_profile(ws: Workspace, name: str = "far") -> Path:
    """A device profile for an SSH host on a closed loopback port (port 9, discard: nothing listens)."""
    return ws.file(f"devices/{name}.yaml", (f"name: {name}\naccelerator: cpu\ntransport: ssh\n"
                                             "ssh: {host: 127.0.0.1, port: 9, user: nobody, connect_timeout_s: 2}\n").encode())


def _corrupt_images(ws: Workspace, classes: list[str]) -> Path:
    root = ws.root / "in" / "corrupt"
    for i, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for j, suffix in enumerate((".jpg", ".png", ".jpeg")):
            (root / name / f"broken{j}{suffix}").write_bytes(_random(700, 100 * i + j))
    return root


def _readonly(ws: Workspace) -> Path:
    folder = ws.root / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


# A builder returns the argv after ``edgekit`` (and optional extra environment variables).
Builder = Callable[[Workspace], list]
F, I8, ONNX, BARE = "float", "int8", "onnx", "bare"

CASES: list[tuple[str, Builder, int, tuple[str, ...]]] = [
    # --- model files: empty, truncated, random, wrong format ------------------------------------------------
    ("tflite-empty/predict", lambda w: ["predict", w.file("model.tflite", b""), w.image],
     4, ("model.tflite", "empty (0 bytes)")),
    ("tflite-truncated/profile", lambda w: ["profile", w.file("model.tflite", _truncated(w.models[F])),
                                            "--runs", "2", "--report", w.prev], 4, ("model.tflite", "truncated or corrupt")),
    ("tflite-random/evaluate", lambda w: ["evaluate", w.artifact("model.tflite", _random(4096, 1), "tflite"),
                                          w.digits / "test", "--out", w.prev], 4, ("model.tflite", "not a TFLite or ONNX")),
    ("onnx-empty/export", lambda w: ["export", w.file("model.onnx", b""), "--target", "onnx", "--int8",
                                     "--calibration", w.digits / "train", "--out", w.prev], 4, ("model.onnx", "empty")),
    ("onnx-truncated/predict", lambda w: ["predict", w.file("model.onnx", _truncated(w.models[ONNX], 0.6)), w.image],
     4, ("model.onnx", "re-export or re-download")),
    ("onnx-random/profile", lambda w: ["profile", w.file("model.onnx", _random(5000, 2)), "--runs", "2",
                                       "--report", w.prev], 4, ("model.onnx", "not a TFLite or ONNX")),
    ("onnx-lfs-pointer/export", lambda w: ["export", w.file("model.onnx", _lfs_pointer()), "--target", "onnx",
                                           "--int8", "--out", w.prev], 4, ("model.onnx", "git lfs pull")),
    ("onnx-bytes-named-tflite/profile", lambda w: ["profile", w.file("model.tflite", w.models[ONNX].read_bytes()),
                                                   "--runs", "2"], 4, ("model.tflite", "rename it to .onnx")),
    ("tflite-malformed-flatbuffer/predict", lambda w: ["predict", w.file("model.tflite", _malformed(w)), w.image,
                                                       "--size", "32"], 4, ("model.tflite", "TFLite interpreter")),
    ("manifest-hash-mismatch/predict", lambda w: ["predict", _tampered(w), w.image], 4, ("sha256", "re-run")),
    ("keras-empty/export", lambda w: ["export", w.artifact("model.keras", b"", "keras"), "--target", "tflite",
                                      "--out", w.prev], 4, ("model.keras", "empty (0 bytes)")),
    ("keras-truncated/export", lambda w: ["export", w.artifact("model.keras", _truncated_keras(w), "keras"),
                                          "--target", "onnx", "--out", w.prev], 4, ("model.keras", "not a valid .keras")),
    ("keras-random/evaluate", lambda w: ["evaluate", w.artifact("model.keras", _random(3000, 3), "keras"),
                                         w.digits / "test", "--out", w.prev], 4, ("model.keras", "not a zip")),
    ("h5-empty/evaluate", lambda w: ["evaluate", w.artifact("model.h5", b"", "h5"), w.digits / "test"],
     4, ("model.h5", "empty (0 bytes)")),
    ("h5-truncated/evaluate", lambda w: ["evaluate", w.artifact("model.h5", _truncated(Path(_h5_path(w))), "h5"),
                                         w.digits / "test", "--out", w.prev], 4, ("model.h5", "not a valid HDF5")),
    # --- model files that would run code ---------------------------------------------------------------------
    ("keras-lambda/export", lambda w: ["export", _lambda_artifact(w), "--target", "onnx", "--out", w.prev],
     4, ("model.keras", "Lambda", "--trust-model")),
    ("keras-config-os-system/export", lambda w: ["export", w.artifact("model.keras", keras_zip(
        {"module": "os", "class_name": "system", "config": {"command": f"touch {w.sentinel()}"},
         "registered_name": None}), "keras"), "--target", "tflite", "--out", w.prev],
     4, ("model.keras", "os.system", "--trust-model")),
    ("keras-zip-slip/export", lambda w: ["export", w.artifact("model.keras", keras_zip(
        {"class_name": "Functional", "config": {}}, (("../../SENTINEL", b"escaped"),)), "keras"),
        "--target", "onnx", "--out", w.prev], 4, ("model.keras", "escapes the archive")),
    ("keras-decompression-bomb/export", lambda w: ["export", w.artifact("model.keras", _bomb(), "keras"),
                                                   "--target", "onnx", "--out", w.prev], 4, ("model.keras", "bomb")),
    ("pth-os-system-global/finetune", lambda w: ["finetune", w.digits / "train", "--weights",
                                                 _evil_pth(w.root / "in.pth", w.sentinel()), "--input-size", "32",
                                                 "--out", w.prev], 4, ("in.pth", "os.system")),
    ("onnx-external-absolute/predict", lambda w: ["predict", _external(w, "/etc/passwd"), w.image],
     4, ("model.onnx", "absolute path")),
    ("onnx-external-dotdot/profile", lambda w: ["profile", _external(w, "../weights.bin"), "--runs", "2"],
     4, ("model.onnx", "'..'")),
    ("onnx-external-symlink/export", lambda w: ["export", _symlinked_external(w), "--target", "onnx", "--int8",
                                                "--out", w.prev], 4, ("model.onnx", "symlink")),
    # --- recipes ---------------------------------------------------------------------------------------------
    ("recipe-unknown-key/run", lambda w: ["run", _recipe(w, "name: demo\ndata: {train: embedded:digits}\n"
                                                            "finetune: {epochs: 1, colour: red}\n"), "--out", w.prev],
     2, ("recipe.yaml", "finetune", "'colour' was unexpected")),
    ("recipe-wrong-type/run", lambda w: ["run", _recipe(w, "name: demo\ndata: {train: embedded:digits}\n"
                                                           "finetune: {epochs: many}\n"), "--out", w.prev],
     2, ("recipe.yaml", "finetune.epochs", "integer")),
    ("recipe-python-object-tag/run", lambda w: ["run", _recipe(w, "name: demo\ndata: !!python/object/apply:os.system "
                                                                  "['touch SENTINEL']\nfinetune: {}\n"), "--out", w.prev],
     2, ("recipe.yaml", "!!python/object")),
    # --- output paths ----------------------------------------------------------------------------------------
    ("out-equals-input/export", lambda w: ["export", _copied_onnx(w), "--target", "onnx", "--int8",
                                           "--calibration", w.digits / "train", "--out", _copied_onnx(w).parent],
     9, ("--out", "input model")),
    ("out-under-a-file/export", lambda w: ["export", w.models[ONNX], "--target", "onnx", "--int8", "--calibration",
                                           w.digits / "train", "--out", w.prev / "manifest.json" / "sub"],
     9, ("manifest.json", "--out")),
    pytest.param("out-read-only-folder/evaluate",
                 lambda w: ["evaluate", w.models[F].parent, w.digits / "test", "--out", _readonly(w)],
                 9, ("locked", "--out"),
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod 0o555 does not block "
                                          "writes (out-under-a-file covers an unwritable --out)")),
    # --- image folders ---------------------------------------------------------------------------------------
    ("image-folder-empty/finetune", lambda w: ["finetune", _mkdir(w.root / "in" / "empty"), "--out", w.prev],
     3, ("empty", "<class name>")),
    ("image-folder-corrupt/finetune", lambda w: ["finetune", _corrupt_images(w, ["a", "b"]), "--out", w.prev],
     3, ("corrupt", "unreadable")),
    ("image-folder-corrupt/evaluate", lambda w: ["evaluate", _digit_labelled(w), _corrupt_images(w, ["0", "1"]),
                                                 "--out", w.prev], 3, ("corrupt", "unreadable")),
    # --- names: did you mean ---------------------------------------------------------------------------------
    ("unknown-target/compile", lambda w: ["compile", w.models[I8].parent, "--target", "edgtpu", "--out", w.prev],
     2, ("'edgtpu'", "did you mean 'edgetpu'")),
    ("unknown-device/profile", lambda w: ["profile", w.models[F].parent, "--device", "cpu1t"],
     2, ("'cpu1t'", "did you mean 'cpu-1t'")),
    ("unknown-backbone/finetune", lambda w: ["finetune", w.digits / "train", "--backbone", "mobilnet_v2",
                                             "--out", w.prev], 2, ("'mobilnet_v2'", "did you mean 'mobilenet_v2'")),
    # --- missing hardware, unreachable devices ---------------------------------------------------------------
    ("device-edgetpu-missing/profile", lambda w: ["profile", w.models[I8].parent, "--device", "edgetpu",
                                                  "--report", w.prev], 7, ("edgetpu", "libedgetpu")),
    ("device-gpu-missing/profile", lambda w: ["profile", w.models[F].parent, "--device", "gpu"], 7, ("gpu:",)),
    ("accelerator-gpu-missing/predict-onnx", lambda w: ["predict", w.models[ONNX], w.image, "--accelerator", "gpu"],
     7, ("'gpu'", "--accelerator cpu")),
    ("accelerator-edgetpu-missing/predict-int8", lambda w: ["predict", w.models[I8], w.image,
                                                            "--accelerator", "edgetpu"], 7, ("'edgetpu'", "libedgetpu")),
    ("accelerator-edgetpu-onnx-model/predict", lambda w: ["predict", w.models[ONNX], w.image, "--accelerator",
                                                          "edgetpu"], 2, ("--accelerator edgetpu", "edgetpu_compiler")),
    ("ssh-device-unreachable/profile-yaml-path", lambda w: ["profile", w.models[F].parent, "--device",
                                                            _ssh_profile(w), "--report", w.prev],
     7, ("far", "127.0.0.1:9", "unreachable")),
    ("ssh-device-unreachable/profile-EDGEKIT_DEVICES", lambda w: (
        ["profile", w.models[F].parent, "--device", "far2"], {"EDGEKIT_DEVICES": str(_ssh_profile(w, "far2").parent)}),
     7, ("far2", "unreachable")),
]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _malformed(ws: Workspace) -> bytes:
    from test_model_safety import _corrupt_weights_shape

    return _corrupt_weights_shape(ws.models[BARE].read_bytes())


def _tampered(ws: Workspace) -> Path:
    folder = ws.root / "in" / "tampered"
    shutil.copytree(ws.models[F].parent, folder)
    model = folder / "model.tflite"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    return folder


def _truncated_keras(ws: Workspace) -> bytes:
    return keras_zip({"class_name": "Functional", "config": {}}, (("model.weights.h5", _random(20000, 4)),))[:9000]


def _h5_path(ws: Workspace) -> Path:
    path = ws.root / "full.h5"
    _h5_model(path)
    return path


def _lambda_artifact(ws: Workspace) -> Path:
    model, _ = ws.lambda_keras
    return ws.artifact("model.keras", model.read_bytes(), "keras")


def _symlinked_external(ws: Workspace) -> Path:
    outside = ws.root / "outside.bin"
    outside.write_bytes(_random(120, 5))
    model = _external(ws, "link.bin")
    (model.parent / "link.bin").symlink_to(outside)
    return model


def _copied_onnx(ws: Workspace) -> Path:
    target = ws.root / "in" / "onnx-copy" / "model.onnx"
    if not target.exists():
        target.parent.mkdir(parents=True)
        shutil.copy(ws.models[ONNX], target)
    return target


def _digit_labelled(ws: Workspace) -> Path:
    """The tiny float .tflite with a manifest whose labels are the digit folder names."""
    return ws.artifact("model.tflite", ws.models[F].read_bytes(), "tflite")


def _ids(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.fixture
def workspace(tmp_path, tiny_models, digits_dir, lambda_keras) -> Workspace:
    ws = Workspace(root=tmp_path / "ws", models=tiny_models, digits=digits_dir, lambda_keras=lambda_keras)
    shutil.copytree(tiny_models[F].parent, ws.prev)  # an earlier, valid output: model.tflite + manifest.json
    return ws


@pytest.mark.parametrize(("name", "build", "code", "needles"), CASES, ids=[_ids(c) for c in CASES])
def test_bad_input_ends_in_one_clear_error_and_loses_nothing(workspace, name, build, code, needles):
    built = build(workspace)
    argv, env = built if isinstance(built, tuple) else (built, {})
    before = sha256_tree(workspace.root)
    digits_before = sha256_tree(workspace.digits)
    proc = run_edgekit(*argv, env=env)
    assert_one_clear_error(proc, code, *needles)
    assert sha256_tree(workspace.root) == before, "a failing command changed, added or removed files"
    assert sha256_tree(workspace.digits) == digits_before
    assert not workspace.sentinel().exists(), "code from the bad input ran"
    assert not (workspace.root.parent / "SENTINEL").exists(), "a zip member escaped its archive"


def test_bad_input_table_has_at_least_25_distinct_cases():
    assert len({_ids(c) for c in CASES}) == len(CASES) >= 25


def test_lambda_model_runs_only_with_trust_model(tmp_path, lambda_keras, digits_dir):
    """The refusal is not vacuous: with --trust-model the same file loads and its Lambda code really runs."""
    model, sentinel = lambda_keras
    folder = tmp_path / "art"
    folder.mkdir()
    shutil.copy(model, folder / "model.keras")
    write_manifest_beside(folder / "model.keras", "keras")
    refused = run_edgekit("evaluate", folder, digits_dir / "test")
    assert_one_clear_error(refused, 4, "Lambda", "--trust-model")
    assert not sentinel.exists()
    trusted = run_edgekit("evaluate", folder, digits_dir / "test", "--trust-model", "--json", timeout=300)
    assert trusted.returncode == 0, trusted.stderr
    assert sentinel.exists()
    images = [p for p in (digits_dir / "test").rglob("*") if p.is_file()]
    threes = [p for p in images if p.parent.name == "3"]
    assert json.loads(trusted.stdout)["accuracy"] == pytest.approx(len(threes) / len(images))  # every image ran
