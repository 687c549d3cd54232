"""Opt-in prediction logging on the device: one SQLite row per prediction, for drift monitoring later.

``Predictor(model, log="predictions.sqlite")`` (or ``edgekit predict --log``) appends a row per image:
time, model sha256, top-k labels and scores, latency, the model's own signals (confidence, margin,
entropy) and cheap input statistics (source size, brightness, contrast, colour, sharpness), plus
optionally a sampled JPEG copy of the input for later labelling. ``edgekit monitor`` compares these
rows with the reference profile recorded when the model was made.

Why SQLite (stdlib ``sqlite3``): a real embedded database. In WAL mode every row is its own
transaction, so a process killed mid-write loses at most the row it was writing, and several
processes can log to one file (writers wait on SQLite's lock, ``busy_timeout``). The size bound is a
rotation inside the database: once the file passes ``max_mb`` the oldest quarter of the rows (and
their images) are deleted and SQLite reuses the freed pages, so the file stops growing.

Only numpy + Pillow + the standard library: this runs from the light ``[runtime]`` install.
"""

from __future__ import annotations

import io
import json
import math
import random
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.errors import OutputError, UsageError

SCHEMA_VERSION = "1"
# The statistics computed for every input image; the reference profile holds the same ones.
INPUT_FEATURES = ("width", "height", "jpeg_quality", "brightness", "contrast", "red", "green", "blue", "saturation",
                  "sharpness")
SOURCE_FEATURES = 3  # width, height, jpeg_quality: read from the input as given; the rest from its pixels
# The model's own signals, computed from its class probabilities.
SCORE_FEATURES = ("confidence", "margin", "entropy")
ROW_STEP = 8  # statistics read every 8th pixel row at full width (28 rows of a 224 px input)
ROTATE_CHECK_EVERY = 64  # rows between two size checks (PRAGMA page_count) per process ...
ROTATE_CHECK_SHARE = 1 / 16  # ... or sooner, once this share of max_mb was written since the last check
ROW_BYTES = 400  # the rough size of a row without an image
ROTATE_FRACTION = 0.25  # share of the oldest rows deleted when the file passes max_mb
MIN_MAX_MB = 0.05
DEFAULT_MAX_MB = 64.0
SAMPLE_JPEG_QUALITY = 90

_COLUMNS = ("time", "model_sha256", "top1", "labels", "scores", "latency_ms", "source",
            *SCORE_FEATURES, *INPUT_FEATURES)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,            -- unix seconds (UTC)
    model_sha256 TEXT NOT NULL,
    top1 TEXT NOT NULL,
    labels TEXT NOT NULL,          -- JSON list, top-k order
    scores TEXT NOT NULL,          -- JSON list, top-k order
    latency_ms REAL NOT NULL,      -- decoded image -> probabilities, per image
    source TEXT,                   -- the file path when the input was a path
    {", ".join(f"{name} REAL" for name in (*SCORE_FEATURES, *INPUT_FEATURES))}
);
CREATE TABLE IF NOT EXISTS samples (
    prediction_id INTEGER PRIMARY KEY,
    jpeg BLOB NOT NULL             -- the input at the model's size, for later labelling
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA_VERSION}');
"""
_INSERT = f"INSERT INTO predictions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def image_statistics(pixels: np.ndarray) -> tuple[float, ...]:
    """HxWx3 uint8 RGB (the model-size input) -> brightness, contrast, red, green, blue, saturation, sharpness.

    All in [0, 1] except sharpness, ``log10(1 + mean squared horizontal second difference of luma)``
    (0..255 scale). Computed on every ``ROW_STEP``-th row at full width (fine-scale sharpness kept),
    one channel plane at a time (numpy reductions over a size-3 axis are slow), with in-place
    arithmetic and dot products for the sums of squares: this runs once per logged prediction.
    """
    red, green, blue = pixels[ROW_STEP // 2::ROW_STEP].transpose(2, 0, 1).astype(np.float32)
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    chroma = np.maximum(np.maximum(red, green), blue)
    chroma -= np.minimum(np.minimum(red, green), blue)
    curvature = luma[:, 1:-1] * 2.0
    curvature -= luma[:, :-2]
    curvature -= luma[:, 2:]
    flat, bent = luma.ravel(), curvature.ravel()
    mean = float(flat.sum()) / flat.size
    spread = math.sqrt(max(float(np.dot(flat, flat)) / flat.size - mean * mean, 0.0))
    sharpness = math.log10(1.0 + float(np.dot(bent, bent)) / max(bent.size, 1))
    return (mean / 255.0, spread / 255.0, float(red.mean()) / 255.0, float(green.mean()) / 255.0,
            float(blue.mean()) / 255.0, float(chroma.mean()) / 255.0, sharpness)


def score_statistics(probabilities: np.ndarray) -> np.ndarray:
    """N x K class probabilities -> N x 3: confidence (top-1), margin (top-1 minus top-2), entropy / log K."""
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    top2 = -np.partition(-probabilities, 1, axis=1)[:, :2] if probabilities.shape[1] > 1 else \
        np.hstack([probabilities, np.zeros_like(probabilities)])
    clipped = np.clip(probabilities, 1e-12, 1.0)
    entropy = -(clipped * np.log(clipped)).sum(axis=1) / math.log(max(probabilities.shape[1], 2))
    return np.column_stack([top2[:, 0], top2[:, 0] - top2[:, 1], entropy])


# libjpeg's standard luminance table (quality 50), natural order; the quality estimate scales it.
_JPEG_LUMA_TABLE = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57,
                             69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64,
                             81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
                            dtype=np.float64)


def jpeg_quality(quantization: dict | None) -> float | None:
    """The libjpeg quality (1..100) a JPEG was saved with, estimated from its luminance quantization table.

    Table entries are the standard ones times ``scale`` (5000/q below 50, 200-2q above); entries clipped
    at 255 are ignored. Order-free (sums), so Pillow's table order does not matter.
    """
    if not quantization or 0 not in quantization or len(quantization[0]) != 64:
        return None
    table = np.sort(np.asarray(quantization[0], dtype=np.float64))
    standard = np.sort(_JPEG_LUMA_TABLE)
    unclipped = table < 255
    if not unclipped.any():
        return 1.0
    scale = 100.0 * table[unclipped].sum() / standard[unclipped].sum()
    return float(np.clip(5000.0 / scale if scale > 100 else (200.0 - scale) / 2.0, 1.0, 100.0))


def source_properties(image) -> tuple[float | None, float | None, float | None]:
    """Width, height and JPEG quality of the input as given (before resizing); a path's header is read, not its pixels.

    JPEG quality is known for a JPEG path or a PIL image decoded from a JPEG; None for raw arrays.
    """
    if isinstance(image, np.ndarray):
        return int(image.shape[1]), int(image.shape[0]), None
    if isinstance(image, (str, Path)):
        from PIL import Image

        try:
            with Image.open(image) as opened:
                return (*opened.size, jpeg_quality(getattr(opened, "quantization", None)))
        except OSError:
            return None, None, None
    size = getattr(image, "size", None)
    if not isinstance(size, tuple):
        return None, None, None
    return int(size[0]), int(size[1]), jpeg_quality(getattr(image, "quantization", None))


class PredictionLog:
    """An append-only SQLite log of predictions, bounded in size; safe for several writing processes.

    ``sample_images`` is the share of inputs (0..1) whose model-size pixels are kept as a JPEG for
    later labelling; ``max_mb`` bounds the file (oldest rows rotate out); ``durable=True`` makes
    every commit survive power loss too (``synchronous=FULL``; the default survives a killed process).
    """

    def __init__(self, path: str | Path, *, max_mb: float = DEFAULT_MAX_MB, sample_images: float = 0.0,
                 seed: int | None = None, durable: bool = False, busy_timeout_s: float = 10.0):
        if not max_mb >= MIN_MAX_MB:
            raise UsageError(f"log size bound {max_mb} MB is too small", fix=f"use at least {MIN_MAX_MB} MB")
        if not 0.0 <= sample_images <= 1.0:
            raise UsageError(f"image sampling rate {sample_images} is not in [0, 1]", fix="e.g. 0.01 keeps 1 in 100")
        self.path = Path(path).expanduser()
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.sample_images = sample_images
        self._random = random.Random(seed)
        self._since_check = self._written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.execute(f"PRAGMA journal_size_limit={min(4 << 20, self.max_bytes // 4)}")
            self._db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            self._page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            # checkpoint the WAL well before it outgrows the bound (default: every 1000 pages = 4 MiB)
            self._db.execute(f"PRAGMA wal_autocheckpoint={max(16, self.max_bytes // 8 // self._page_size)}")
        except sqlite3.DatabaseError as exc:
            raise OutputError(f"cannot open the prediction log {self.path}: {exc}",
                              fix="pass a writable path to a new file or an existing edgekit log (--log)") from exc

    def record(self, images: Sequence, pixels: np.ndarray, probabilities: np.ndarray,
               ranked: list[list[tuple[str, float]]], *, model_sha256: str, seconds: float) -> None:
        """Append one row per image of a batch in one transaction; ``seconds`` is the batch's latency."""
        now = time.time()
        latency_ms = seconds * 1000.0 / max(len(images), 1)
        scores = score_statistics(probabilities)
        rows, keep = [], []
        for image, image_pixels, top, signals in zip(images, pixels, ranked, scores):
            rows.append((now, model_sha256, top[0][0], json.dumps([label for label, _ in top]),
                         json.dumps([round(score, 6) for _, score in top]), latency_ms,
                         str(image) if isinstance(image, (str, Path)) else None,
                         *signals.tolist(), *source_properties(image), *image_statistics(image_pixels)))
            keep.append(self.sample_images > 0 and self._random.random() < self.sample_images)
        jpegs = [_jpeg(image_pixels) if kept else None for image_pixels, kept in zip(pixels, keep)]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for row, jpeg in zip(rows, jpegs):
                cursor = self._db.execute(_INSERT, row)
                if jpeg is not None:
                    self._db.execute("INSERT INTO samples VALUES (?, ?)", (cursor.lastrowid, jpeg))
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._rollback()
            raise OutputError(f"cannot write to the prediction log {self.path}: {exc}",
                              fix="check the disk has room and the file is an edgekit log") from exc
        self._since_check += len(rows)
        self._written += ROW_BYTES * len(rows) + sum(len(jpeg) for jpeg in jpegs if jpeg is not None)
        if self._since_check >= ROTATE_CHECK_EVERY or self._written >= self.max_bytes * ROTATE_CHECK_SHARE:
            self._since_check = self._written = 0
            self.rotate_if_needed()

    def rotate_if_needed(self) -> int:
        """Delete the oldest ``ROTATE_FRACTION`` of rows (and their images) while the file is over its bound."""
        deleted = 0
        while self._used_bytes() > self.max_bytes:
            self._db.execute("BEGIN IMMEDIATE")
            count = self._db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
            if count <= 1:
                self._db.execute("COMMIT")
                break
            cut = self._db.execute("SELECT id FROM predictions ORDER BY id LIMIT 1 OFFSET ?",
                                   (max(1, int(count * ROTATE_FRACTION)),)).fetchone()[0]
            self._db.execute("DELETE FROM samples WHERE prediction_id < ?", (cut,))
            deleted += self._db.execute("DELETE FROM predictions WHERE id < ?", (cut,)).rowcount
            self._db.execute("COMMIT")
        return deleted

    def _used_bytes(self) -> int:
        pages, free = (self._db.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "freelist_count"))
        return (pages - free) * self._page_size

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            pass

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _jpeg(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=SAMPLE_JPEG_QUALITY)
    return buffer.getvalue()


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """Every row of a prediction log as columns: numpy arrays for numbers, lists of str for text."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"prediction log {path} does not exist", fix="pass the file given to `predict --log`")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0) as db:
            names = ("id", *_COLUMNS)
            rows = db.execute(f"SELECT {', '.join(names)} FROM predictions ORDER BY id").fetchall()
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path} is not an edgekit prediction log: {exc}",
                         fix="pass the SQLite file written by `edgekit predict --log`") from exc
    columns = list(zip(*rows)) if rows else [() for _ in names]
    text = {"model_sha256", "top1", "labels", "scores", "source"}
    return {name: (list(values) if name in text else np.array(values, dtype=np.float64))
            for name, values in zip(names, columns)}
