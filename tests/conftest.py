"""The shared fixture layer: real (small) data and real (tiny) models, built once per session.

- ``digits_dir``: scikit-learn's bundled handwritten digits written as a PNG image folder
  (``train/<digit>/``, ``test/<digit>/``), 32 px: real images, no download.
- ``clothing_dir``: ../shared/datasets/clothing-small (real photos); skipped when absent.
- ``edgetpu_compiled_dir``: ../shared/models/edgetpu-compiled (models + real compiler output).
- ``require``: skip when a resource is missing, except in CI (``EDGEKIT_CI=1``), where a missing
  resource fails the test: CI must run every test, so a silent skip there would hide a gap.
- ``tiny_float_artifact``: a real finetune run (MobileNetV2 with its real ImageNet weights, 32 px) on
  the digits: the float parent every compress/export/profile test starts from. Real weights matter:
  a random-init backbone gives collapsed features (chance accuracy), which hides quantization bugs.
- ``foreign``: a small CNN trained on the digits, saved the ways users bring their own models
  (.keras, .h5, SavedModel, tf2onnx NHWC .onnx, a PyTorch-layout NCHW .onnx), without manifests.
- ``coral_model``: Coral's quantized MobileNetV1 .tflite from ../shared/models (skipped when absent).
- ``opens_of``: how many times the code under test opens one file (Python's ``open`` audit event).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("EDGEKIT_QUIET", "1")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEKIT_SHARED", REPO.parent / "shared"))
CLOTHING = SHARED / "datasets" / "clothing-small"
EDGETPU_COMPILED = SHARED / "models" / "edgetpu-compiled"
CI_ENV = "EDGEKIT_CI"


def require(available: bool, reason: str) -> None:
    """Skip a test whose resource is missing here; in CI (``EDGEKIT_CI=1``) fail it instead."""
    if available:
        return
    if os.environ.get(CI_ENV) == "1":
        pytest.fail(f"required in CI ({CI_ENV}=1) but missing: {reason}", pytrace=False)
    pytest.skip(reason)


def require_shared(path: Path, what: str) -> None:
    """Skip, with the reason, a test whose ../shared data is absent, in CI too: the shared folder is lent to
    development machines and may not exist where CI runs (pytest's -ra summary lists every such skip)."""
    if not path.exists():
        pytest.skip(f"{what} not found at {path.parent} (set EDGEKIT_SHARED to the shared folder)")


CORAL = SHARED / "models" / "edgetpu-compiled" / "mobilenet_v1_0.25_128_quant.tflite"
SIZE = 32  # input size of the foreign test models
DIGITS = [str(i) for i in range(10)]


_OPENED: list[list[str]] = []  # one list per active ``opens_of`` block


def _record_open(event: str, args: tuple) -> None:
    if event == "open" and _OPENED and isinstance(args[0], str):
        for opened in _OPENED:
            opened.append(args[0])


sys.addaudithook(_record_open)  # audit hooks cannot be removed: one for the session, idle outside ``opens_of``


@pytest.fixture
def opens_of():
    """``with opens_of(path) as count: ...`` then ``count()``: how often that file was opened inside the block, by
    open(), Path.read_bytes, os.open or anything else that raises Python's ``open`` audit event."""
    @contextlib.contextmanager
    def counting(path: Path):
        opened: list[str] = []
        _OPENED.append(opened)
        target = os.path.realpath(path)
        try:
            yield lambda: sum(os.path.realpath(name) == target for name in opened)
        finally:
            _OPENED.remove(opened)

    return counting


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
    require_shared(CLOTHING / "train", "real photo dataset")
    return CLOTHING


@pytest.fixture(scope="session")
def edgetpu_compiled_dir() -> Path:
    require_shared(EDGETPU_COMPILED / "README.md", "Edge TPU compiler outputs")
    return EDGETPU_COMPILED


@pytest.fixture(scope="session")
def tiny_float_artifact(tmp_path_factory, digits_dir):
    """A finetuned tiny classifier artifact (model.keras + manifest.json) on the digits."""
    from edgekit.stages.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(backbone="mobilenet_v2", weights="imagenet", input_size=32, epochs=15,
                            augment_copies=0, early_stopping=0, seed=0)
    result = finetune(data=digits_dir / "train", out_dir=tmp_path_factory.mktemp("float") / "float", config=config)
    return result.artifact


def small_depthwise_net(activation: str, head_activation: str | None = None):
    """A small conv / depthwise / 1x1 conv / dense net (seed 0) for int8 conversion tests: the layer kinds whose
    ranges and biases the quantization stages edit; ``head_activation`` on the dense (None: logits out)."""
    from edgekit._tf import import_tf, set_seed

    _, tf_keras = import_tf()
    set_seed(0)
    inputs = tf_keras.Input((24, 24, 3))
    x = tf_keras.layers.Conv2D(16, 3, strides=2, activation=activation)(inputs)
    x = tf_keras.layers.DepthwiseConv2D(3, activation=activation)(x)
    x = tf_keras.layers.Conv2D(8, 1)(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(6, activation=head_activation)(x))


def sha256_tree(folder: Path) -> dict[str, str]:
    """Hashes of every file below ``folder``: compare before/after to prove nothing was overwritten."""
    from edgekit.artifacts import sha256_file

    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# --- Reports in a real browser (headless Chromium) ---------------------------------------------------
SCREENSHOTS = REPO / "runs" / "screenshots"  # kept as CI artifacts
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1")
WINDOW_WIDTH, WINDOW_HEIGHT = 1280, 900

# Appended to a copy of the report: measures the page after load and leaves the numbers in the DOM.
_PROBE = """<script>
window.addEventListener('load', () => {
  const doc = document.documentElement;
  const box = e => { const r = e.getBoundingClientRect();
                     return {top: r.top + scrollY, left: r.left, right: r.right, width: r.width, height: r.height}; };
  const probe = {
    scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, scrollHeight: doc.scrollHeight,
    overflowing: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > doc.clientWidth + 0.5)
                   .map(e => e.tagName + ' ' + (e.textContent || '').slice(0, 60)).slice(0, 10),
    images: [...document.images].map(i => ({complete: i.complete, naturalWidth: i.naturalWidth, ...box(i)})),
    tables: [...document.querySelectorAll('table')].map(t => ({rows: t.rows.length, ...box(t)})),
    summary: [...document.querySelectorAll('.summary')].map(box),
    headings: [...document.querySelectorAll('h2')].map(h => ({text: h.textContent, ...box(h)})),
  };
  const out = document.createElement('pre'); out.id = 'edgekit-probe'; out.textContent = JSON.stringify(probe);
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str | None:
    import shutil

    candidates = (os.environ.get("EDGEKIT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome")
    return next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)


@pytest.fixture(scope="session")
def render_report(tmp_path_factory):
    """``render_report(html_path, name)``: load a report in headless Chromium at 1280x900.

    Returns ``(probe, dom, screenshot)``: the page's measurements (scrollWidth, image and table boxes,
    h2 positions, elements past the right edge), the DOM after load, and a full-page PNG saved under
    runs/screenshots/<name>.png. Skips where Chromium is absent, unless EDGEKIT_REQUIRE_CHROMIUM=1
    (CI sets it after installing Debian's ``chromium``), where that is a failure.
    """
    import html as html_module
    import json
    import re
    import subprocess

    binary = _chromium()
    if binary is None:
        message = "Chromium not found (Debian: apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get("EDGEKIT_REQUIRE_CHROMIUM"):
            pytest.fail(message + " but EDGEKIT_REQUIRE_CHROMIUM is set")
        pytest.skip(message)
    profiles = tmp_path_factory.mktemp("chromium")

    def chromium(*args: str, name: str) -> str:
        command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profiles / name}", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
        return result.stdout

    def render(html_path: Path, name: str):
        probed = profiles / f"{name}-probed.html"
        probed.write_text(Path(html_path).read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"),
                          encoding="utf-8")
        dom = chromium(f"--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}", "--virtual-time-budget=10000", "--dump-dom",
                       probed.as_uri(), name=f"{name}-dom")
        found = re.search(r'<pre id="edgekit-probe">(.*?)</pre>', dom, re.S)
        assert found, "the page's load handler never ran: " + dom[-500:]
        probe = json.loads(html_module.unescape(found.group(1)))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        screenshot = SCREENSHOTS / f"{name}.png"
        screenshot.unlink(missing_ok=True)
        chromium(f"--window-size={WINDOW_WIDTH},{min(probe['scrollHeight'], 8000)}", f"--screenshot={screenshot}",
                 Path(html_path).resolve().as_uri(), name=f"{name}-shot")
        assert screenshot.is_file(), "chromium wrote no screenshot"
        return probe, dom, screenshot

    return render

@pytest.fixture(scope="session")
def coral_model() -> Path:
    require_shared(CORAL, "Coral test models")
    return CORAL


def _nchw_onnx(nhwc_path: Path, out: Path) -> None:
    """The same graph as torch.onnx.export lays it out: a 1x3xHxW input, transposed to NHWC inside."""
    import onnx
    from onnx import helper

    model = onnx.load(str(nhwc_path))
    graph = model.graph
    old = graph.input[0]
    graph.input.remove(old)
    graph.input.insert(0, helper.make_tensor_value_info("pixel_values", onnx.TensorProto.FLOAT, [1, 3, SIZE, SIZE]))
    graph.node.insert(0, helper.make_node("Transpose", ["pixel_values"], [old.name], perm=[0, 2, 3, 1]))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


@pytest.fixture(scope="session")
def foreign(tmp_path_factory, digits_dir) -> dict[str, Path]:
    """A small CNN trained on the digits with [-1, 1] input, saved the ways users bring models (no manifests)."""
    from edgekit._tf import import_tf
    from edgekit.artifacts import Preprocessing
    from edgekit.data import load_folder_arrays, normalize, scan_image_folder

    root = tmp_path_factory.mktemp("foreign")
    tf, keras = import_tf()
    keras.utils.set_random_seed(0)
    pre = Preprocessing.preset("tf", (SIZE, SIZE))
    pixels, labels = load_folder_arrays(scan_image_folder(digits_dir / "train"), pre)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.MaxPooling2D()(keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs))
    h = keras.layers.MaxPooling2D()(keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h))
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy")
    model.fit(normalize(pixels, pre), labels, epochs=15, batch_size=32, verbose=0)
    paths = {"keras": root / "cnn.keras", "h5": root / "cnn.h5", "savedmodel": root / "cnn_savedmodel",
             "onnx": root / "cnn_nhwc.onnx", "onnx_nchw": root / "cnn_nchw.onnx", "labels": root / "labels.txt"}
    model.save(str(paths["keras"]), save_format="keras")
    model.save(str(paths["h5"]), save_format="h5")
    model.save(str(paths["savedmodel"]), save_format="tf")
    import onnx
    import tf2onnx

    spec = (tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    onnx.save(proto, str(paths["onnx"]))
    _nchw_onnx(paths["onnx"], paths["onnx_nchw"])
    paths["labels"].write_text("\n".join(DIGITS) + "\n")
    return paths


def assert_fits_and_plot_renders(probe: dict, screenshot: Path) -> None:
    """A rendered report fits the 1280-px window and each of its images drew something (not blank)."""
    import numpy as np
    from PIL import Image

    assert probe["clientWidth"] == WINDOW_WIDTH
    assert probe["scrollWidth"] <= WINDOW_WIDTH, f"page is {probe['scrollWidth']} px wide: {probe['overflowing']}"
    assert probe["overflowing"] == []
    assert probe["images"], "no image in the report"
    shot = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float64)
    for image in probe["images"]:
        assert image["complete"] and image["naturalWidth"] > 0, image
        top, left = int(image["top"]), int(image["left"])
        area = shot[top:top + int(image["height"]), left:left + int(image["width"])]
        assert area.size and (area < 200).mean() > 0.01 and area.std() > 20, f"image area looks blank: {image}"
