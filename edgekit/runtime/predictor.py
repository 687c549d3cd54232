"""``Predictor``: image in, top-k labels out, with numpy + Pillow + one inference runtime (never TensorFlow).

Labels and preprocessing are looked up in order: explicit constructor arguments (what the user asked
for), the metadata embedded in the model file, the ``manifest.json`` beside it. Every model file is
checked by :mod:`edgekit.runtime.safety` before a native parser sees it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifacts import Preprocessing, load_artifact, sha256_file
from edgekit.data import IMAGE_SUFFIXES, _resample, load_image, normalize, to_rgb
from edgekit.errors import DataError, EdgekitError, ManifestError
from edgekit.runtime.backends import open_backend
from edgekit.runtime.metadata import metadata_from_map, read_tflite_metadata
from edgekit.runtime.predlog import PredictionLog
from edgekit.runtime.safety import check_model_file, verify_tflite

SUPPLY_FIX = ("pass --preprocess torch|tf|0-1|raw or --mean/--std (Predictor(preprocessing={'mean': ..., "
              "'std': ...})), or import the model with `edgekit import` so they are recorded")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _looks_like_probabilities(values: np.ndarray) -> bool:
    """True when rows are already a distribution (allowing for int8 quantization error)."""
    return bool(values.min() >= -1e-3 and values.max() <= 1 + 1e-3
                and np.allclose(values.sum(axis=-1), 1.0, atol=0.05))


class Predictor:
    """A loaded classifier. ``backend`` names the runtime actually used.

    ``log`` (a path, or a :class:`~edgekit.runtime.predlog.PredictionLog` for its options) appends one
    row per prediction to a SQLite log that ``edgekit monitor`` reads; off by default.
    """

    def __init__(self, model: str | Path, *, threads: int | None = None, accelerator: str = "cpu",
                 labels: list[str] | None = None, preprocessing: dict | None = None, verify: bool = True,
                 log: str | Path | PredictionLog | None = None):
        artifact = load_artifact(Path(model), require_manifest=False)
        self.path = artifact.path
        self.format = check_model_file(self.path)
        if self.format == "tflite" and verify:
            verify_tflite(self.path)
        self._backend = open_backend(self.path, self.format, threads=threads, accelerator=accelerator)
        self.backend: str = self._backend.name
        self.accelerator = accelerator
        embedded = self._embedded_metadata() or {}
        manifest = artifact.manifest
        classes = int(self._backend.output.shape[-1])
        self.labels: list[str] = list(labels or embedded.get("labels") or manifest.labels or [])
        if not self.labels and classes > 0:  # a foreign model: its outputs are numbered
            self.labels = [f"class_{i}" for i in range(classes)]
        self.preprocessing = self._preprocessing(preprocessing or embedded.get("preprocessing")
                                                 or manifest.preprocessing)
        if not self.labels:
            raise ManifestError(f"no labels for {self.path}: none embedded, no manifest.json beside it and a "
                                "dynamic class count", fix="pass --labels FILE (one label per output)")
        if classes > 0 and classes != len(self.labels):
            raise ManifestError(f"{self.path} outputs {classes} classes but {len(self.labels)} labels were given",
                                fix="pass the labels file that belongs to this model")
        self.log: PredictionLog | None = None
        self.sha256 = manifest.sha256
        if log is not None:
            self.start_log(log)

    def start_log(self, log: str | Path | PredictionLog) -> None:
        """Append one row per prediction to ``log`` from now on (a path opens, or creates, a SQLite log)."""
        self.log = PredictionLog(log) if isinstance(log, (str, Path)) else log
        self.sha256 = self.sha256 or sha256_file(self.path)

    def _preprocessing(self, given: dict | None) -> Preprocessing:
        """The given/recorded preprocessing, its size taken from the model when absent; else, for a
        quantized uint8/int8 input, raw pixels through its quantization (what such models expect)."""
        height, width = self._backend.input.shape[1:3]
        model_size = [height, width] if height > 0 and width > 0 else None
        spec = self._backend.input
        if not given and spec.quantized:
            if model_size is None:
                raise ManifestError(f"{self.path} has a dynamic input size", fix="pass --size N")
            return Preprocessing.from_quantization(tuple(model_size), spec.dtype.name, spec.scale, spec.zero_point)
        if not given:
            raise ManifestError(f"no preprocessing (mean, std) for {self.path}: none embedded and no manifest.json "
                                "beside it", fix=SUPPLY_FIX)
        if "size" not in given:
            if model_size is None:
                raise ManifestError(f"{self.path} has a dynamic input size", fix="pass --size N")
            given = {**given, "size": model_size}
        chosen = Preprocessing.from_dict(given)
        if model_size and tuple(model_size) != tuple(chosen.size):
            raise ManifestError(f"{self.path} takes {height}x{width} images but the preprocessing says "
                                f"{chosen.size[0]}x{chosen.size[1]}", fix="drop --size; the model's own input size is used")
        return chosen

    def _embedded_metadata(self) -> dict[str, Any] | None:
        if self.format == "onnx":
            return metadata_from_map(self._backend.metadata_map, str(self.path))
        return read_tflite_metadata(self.path.read_bytes())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._backend.input.shape

    @property
    def input_dtype(self) -> np.dtype:
        return self._backend.input.dtype

    def _pixels(self, image) -> np.ndarray:
        """Any accepted image form -> HxWx3 uint8 RGB at the model's size."""
        size, method = self.preprocessing.size, self.preprocessing.resize_method
        if isinstance(image, (str, Path)):
            return load_image(image, size, resize_method=method)
        from PIL import Image, ImageOps

        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
                raise DataError(f"an image array must be HxW or HxWx{{1,3,4}} uint8, got {image.shape} {image.dtype}",
                                fix="pass uint8 RGB pixels (0..255), a PIL image, or a file path")
            image = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
        elif isinstance(image, Image.Image):
            image = ImageOps.exif_transpose(image)
        else:
            raise DataError(f"cannot predict on a {type(image).__name__}", fix="pass a path, a PIL image or a uint8 array")
        image = to_rgb(image)
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), _resample(method))
        return np.asarray(image, dtype=np.uint8)

    def preprocess(self, image) -> np.ndarray:
        """One image -> a model-ready batch of one: RGB, resize, ``(x-mean)/std``, then quantize for int inputs."""
        return self._to_input(self._pixels(image)[None])

    def _to_input(self, pixels: np.ndarray) -> np.ndarray:
        return self._backend.input.quantize(normalize(pixels, self.preprocessing))

    def run_raw(self, batch: np.ndarray) -> np.ndarray:
        """A model-ready batch -> float32 class probabilities (outputs dequantized; logits get a softmax)."""
        spec = self._backend.output
        out = spec.dequantize(self._backend.run(batch)).reshape(len(batch), -1)
        # 1/256 is TFLite's fixed output scale of a quantized SOFTMAX: rows already are probabilities, even
        # where rounding leaves their sum well below 1 (Coral's 1001-class models: 0.85-0.95).
        softmax_output = spec.quantized and abs(spec.scale - 1 / 256) < 1e-9
        return out if softmax_output or _looks_like_probabilities(out) else _softmax(out)

    def _top_k(self, probs: np.ndarray, top_k: int) -> list[tuple[str, float]]:
        order = np.argsort(-probs, kind="stable")[: max(1, top_k)]
        return [(self.labels[i], float(probs[i])) for i in order]

    def predict(self, image, *, top_k: int = 5) -> list[tuple[str, float]]:
        return self.predict_batch([image], top_k=top_k)[0]

    def predict_batch(self, images, *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        started = time.perf_counter()
        pixels = np.stack([self._pixels(image) for image in images])
        probabilities = self.run_raw(self._to_input(pixels))
        ranked = [self._top_k(p, top_k) for p in probabilities]
        if self.log is not None:
            self.log.record(images, pixels, probabilities, ranked, model_sha256=self.sha256,
                            seconds=time.perf_counter() - started)
        return ranked

    def predict_folder(self, folder: str | Path, *, top_k: int = 5) -> list[dict[str, Any]]:
        """Every image below ``folder`` (sorted): ``{"path", "top_k": [{"label", "score"}]}`` or ``{"path", "error"}``."""
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder", fix="pass an image folder, or predict one image file")
        results: list[dict[str, Any]] = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                ranked = self.predict(path, top_k=top_k)
            except EdgekitError as exc:
                results.append({"path": str(path), "error": exc.one_line()})
                continue
            results.append({"path": str(path), "top_k": [{"label": l, "score": s} for l, s in ranked]})
        return results
