"""Image-folder datasets: discovery and validation, seeded splits, loading, augmentation, calibration.

Layout: ``root/<class>/<image>`` (one sub-folder per class), or ``root/train/<class>/...`` with an
optional ``root/val|validation|test/<class>/...`` split. Everything here is numpy + Pillow so the
same code serves training, calibration, evaluation and the on-device runtime.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.artifacts import Manifest, Preprocessing, sha256_named
from edgekit.errors import DataError, UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_NAMES = {"val": ("val", "validation", "valid"), "test": ("test",)}


@dataclass
class ImageFolder:
    """A validated image folder: class names (sorted) and (path, label index) items."""

    root: Path
    classes: list[str]
    items: list[tuple[Path, int]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.items], dtype=np.int64)

    @property
    def paths(self) -> list[Path]:
        return [path for path, _ in self.items]

    def counts(self) -> dict[str, int]:
        counter = Counter(label for _, label in self.items)
        return {name: counter.get(i, 0) for i, name in enumerate(self.classes)}

    def subset(self, indices: np.ndarray | list[int]) -> ImageFolder:
        return ImageFolder(self.root, self.classes, [self.items[i] for i in indices], self.skipped)


# Full decodes cost ~1 ms per photo (JPEGs decode at 1/8 scale), and one command scans the same folder
# several times (calibration, training, evaluation): remember each file's verdict by size and mtime.
_CHECKED: dict[tuple[str, int, int], str | None] = {}


def _check_image(path: Path) -> str | None:
    """Why ``path`` is not a usable image, or None (remembered per path, size and mtime)."""
    try:
        stat = path.stat()
    except OSError as exc:
        return f"unreadable image: {exc}"
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = _decode_problem(path) if stat.st_size else "empty file"
    return _CHECKED[key]


def _decode_problem(path: Path) -> str | None:
    """Decode every pixel (JPEGs in draft mode at reduced scale), not just the header: a truncated file
    passes ``verify()`` and would otherwise fail only at load time, after minutes of other work."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:  # verify() leaves the image unusable: reopen to decode
                image.draft("RGB", (64, 64))
                image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return f"{type(exc).__name__}: {exc}"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"unreadable image: {exc}"
    return None


def scan_image_folder(root: Path, *, strict: bool = False, classes: list[str] | None = None,
                      min_per_class: int = 1) -> ImageFolder:
    """Index ``root/<class>/*``; corrupt images are skipped with a warning (or raise with ``strict``).

    ``classes`` forces the class list (and order), e.g. a test split that must match the training
    labels; a class folder that is not in it is an error.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"image folder {root} does not exist", fix="check the path")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder", fix="pass a folder with one sub-folder per class")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root} has no class sub-folders",
                        fix="arrange images as <folder>/<class name>/<image>.jpg")
    if classes is not None:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(f"{root} has classes the model does not know: {', '.join(unknown)}",
                            fix=f"use a folder whose classes are among: {', '.join(classes)}")
    class_list = list(classes) if classes is not None else found
    items: list[tuple[Path, int]] = []
    skipped: list[tuple[Path, str]] = []
    candidates: list[tuple[Path, int]] = []
    for label, name in enumerate(class_list):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                candidates.append((path, label))
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        reasons = list(pool.map(lambda item: _check_image(item[0]) if item[0].suffix.lower() in IMAGE_SUFFIXES
                                else "not an image file (unknown extension)", candidates))
    for (path, label), reason in zip(candidates, reasons):
        if reason is None:
            items.append((path, label))
        else:
            if strict:
                raise DataError(f"{path}: {reason}", fix="remove or replace the file, or drop --strict to skip it")
            skipped.append((path, reason))
    folder = ImageFolder(root=root, classes=class_list, items=items, skipped=skipped)
    counts = folder.counts()
    empty = [name for name, count in counts.items() if count < min_per_class and (root / name).is_dir()]
    note = f" ({len(skipped)} unreadable file(s) skipped, first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
    if empty:
        raise DataError(f"class folder(s) {', '.join(empty)} in {root} have fewer than {min_per_class} usable "
                        f"image(s){note}", fix="add readable images to them or remove those folders")
    if not items:
        raise DataError(f"{root} contains no readable images{note}", fix="add .jpg/.png images under <class>/ folders")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable file(s) in {root} (first: {skipped[0][0]}: "
                      f"{skipped[0][1]}); use --strict to fail instead", stacklevel=2)
    return folder


def find_split(root: Path, split: str) -> Path | None:
    """``root/<split>`` (with its usual aliases) if it exists, else None."""
    for name in SPLIT_NAMES.get(split, (split,)):
        candidate = Path(root) / name
        if candidate.is_dir():
            return candidate
    return None


def training_images(root: Path) -> Path:
    """The training images of a folder: its train/ split when it has one, else the folder."""
    return find_split(root, "train") or root


def recorded_training_images(manifest: Manifest) -> Path | None:
    """The training images a manifest records (:func:`training_images` of its folder); None when none is
    recorded or it is gone."""
    root = manifest.training.folder_path()
    return training_images(root) if root is not None else None


@dataclass
class Splits:
    train: ImageFolder
    val: ImageFolder
    source: str  # "folders" when explicit split folders were used, else "seeded split"


def load_splits(root: Path, *, validation_fraction: float = 0.2, seed: int = 0, strict: bool = False,
                val_dir: Path | None = None) -> Splits:
    """Training/validation sets: ``val_dir`` or explicit ``train/`` + ``val/`` folders, else a stratified seeded split."""
    if not 0.0 < validation_fraction < 1.0:
        raise UsageError(f"--val-fraction must be in (0, 1), got {validation_fraction}", fix="use e.g. 0.2")
    root = Path(root).expanduser()
    train_dir = root / "train"
    if val_dir is not None:
        train = scan_image_folder(train_dir if train_dir.is_dir() else root, strict=strict)
        return Splits(train, scan_image_folder(Path(val_dir).expanduser(), strict=strict, classes=train.classes),
                      "folders")
    if train_dir.is_dir():
        train = scan_image_folder(train_dir, strict=strict)
        val_dir = find_split(root, "val")
        if val_dir is not None:
            return Splits(train, scan_image_folder(val_dir, strict=strict, classes=train.classes), "folders")
        root_folder = train
    else:
        root_folder = scan_image_folder(root, strict=strict)
    train_idx, val_idx = stratified_split(root_folder.labels, validation_fraction, seed)
    return Splits(root_folder.subset(train_idx), root_folder.subset(val_idx), "seeded split")


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class shuffled split; every class with >= 2 images keeps at least one on each side."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * fraction))
        n_val = min(max(n_val, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def load_image(path: Path | str, size: tuple[int, int] | None = None, *, resize_method: str = "bilinear") -> np.ndarray:
    """Decode any common image to HxWx3 uint8 RGB (EXIF-rotated; alpha composited on white), optionally resized."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            if size is not None and image.format == "JPEG":
                image.draft("RGB", (size[1] * 2, size[0] * 2))  # decode huge JPEGs at reduced scale
            image = ImageOps.exif_transpose(image)
            image = to_rgb(image)
            if size is not None:
                image = image.resize((size[1], size[0]), _resample(resize_method))
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}", fix="remove or replace the file") from exc


def to_rgb(image):
    """Grayscale, palette, CMYK, 16-bit and RGBA images to 8-bit RGB (transparency on white)."""
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        image = Image.fromarray((array / peak * 255).astype(np.uint8))
    return image.convert("RGB") if image.mode != "RGB" else image


def _resample(method: str):
    from PIL import Image

    table = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST,
             "bicubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX}
    if method not in table:
        raise UsageError(f"unknown resize method {method!r}", fix=f"use one of {', '.join(table)}")
    return table[method]


def load_images(paths: list[Path], size: tuple[int, int], *, resize_method: str = "bilinear",
                description: str = "loading images") -> np.ndarray:
    """Decode and resize many images in parallel threads (Pillow releases the GIL) into N x H x W x 3 uint8."""
    from edgekit.progress import track

    out = np.empty((len(paths), size[0], size[1], 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        decoded = pool.map(lambda p: load_image(p, size, resize_method=resize_method), paths)
        for i, image in enumerate(track(decoded, description=description, total=len(paths))):
            out[i] = image
    return out


def load_folder_arrays(folder: ImageFolder, preprocessing: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """All images of a folder as uint8 pixels at the model's input size, and their labels."""
    pixels = load_images(folder.paths, preprocessing.size, resize_method=preprocessing.resize_method)
    return pixels, folder.labels


def normalize(pixels: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """uint8 RGB pixels -> float32 model input: ``(x - mean) / std`` per channel."""
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    return (pixels.astype(np.float32) - mean) / std


@dataclass(frozen=True)
class Augmentation:
    """Train-time augmentation on uint8 pixels; all randomness from the caller's seeded generator."""

    flip: bool = True
    crop: float = 0.85  # keep at least this fraction of each side, then resize back
    brightness: float = 0.2  # +- fraction of full scale
    contrast: float = 0.2

    def apply(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image

        out = np.empty_like(pixels)
        height, width = pixels.shape[1:3]
        for i, image in enumerate(pixels):
            if self.flip and rng.random() < 0.5:
                image = image[:, ::-1]
            if self.crop < 1.0:
                scale = rng.uniform(self.crop, 1.0)
                ch, cw = max(1, int(height * scale)), max(1, int(width * scale))
                top, left = rng.integers(0, height - ch + 1), rng.integers(0, width - cw + 1)
                crop = np.ascontiguousarray(image[top:top + ch, left:left + cw])
                image = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR))
            values = image.astype(np.float32)
            if self.contrast:
                values = (values - values.mean()) * rng.uniform(1 - self.contrast, 1 + self.contrast) + values.mean()
            if self.brightness:
                values = values + rng.uniform(-self.brightness, self.brightness) * 255.0
            out[i] = np.clip(values, 0, 255).astype(np.uint8)
        return out


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'Balanced' weights n / (k * count) so rare classes count as much as common ones."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    total = counts.sum()
    return {i: float(total / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def calibration_sample(folder: ImageFolder, count: int, *, seed: int = 0) -> ImageFolder:
    """A class-stratified, seeded sample of ``count`` images (for quantization calibration)."""
    if count < 1:
        raise UsageError(f"--calibration-samples must be >= 1, got {count}", fix="use e.g. 200")
    if count >= len(folder.items):
        return folder
    fraction = count / len(folder.items)
    _, chosen = stratified_split(folder.labels, fraction, seed)
    return folder.subset(chosen[:count])


def files_fingerprint(paths: list[Path], *, root: Path | None = None) -> str:
    """Cheap content identity of image files (path, size, mtime): the key of caches and skipped stages."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        name = path.relative_to(root) if root is not None else path
        digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def images_sha256(folders: dict[str, ImageFolder]) -> str:
    """Content identity of the images behind a model (recorded in manifests; :func:`files_fingerprint` stays
    the cheap cache key): sha256 over every image's name, ``<role>/<path below its folder>`` (role e.g.
    "train", "val"), and bytes. Same photos anywhere, any mtime: same digest; one changed byte: another."""
    return sha256_named(sorted((f"{role}/{path.relative_to(folder.root).as_posix()}", path)
                               for role, folder in folders.items() for path in folder.paths))


def folder_fingerprint(root: Path) -> str:
    """:func:`files_fingerprint` of every file below ``root`` (paths relative to it)."""
    root = Path(root)
    return files_fingerprint(sorted(p for p in root.rglob("*") if p.is_file()), root=root)


def write_digits_dataset(root: Path, *, size: int = 32, test_fraction: float = 0.25, seed: int = 0) -> Path:
    """Write scikit-learn's bundled handwritten digits (real 8x8 scans) as a PNG image folder.

    This is the embedded default dataset: it ships inside scikit-learn, so the quickstart needs no
    download. Layout: ``root/train/<digit>/`` and ``root/test/<digit>/``.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    from edgekit.artifacts import atomic_path

    root = Path(root)
    marker = root / ".complete"
    if marker.is_file():
        return root
    digits = load_digits()
    train_idx, test_idx = stratified_split(digits.target, test_fraction, seed)
    with atomic_path(root, directory=True) as tmp:
        for split, indices in (("train", train_idx), ("test", test_idx)):
            for i in indices:
                folder = tmp / split / str(digits.target[i])
                folder.mkdir(parents=True, exist_ok=True)
                gray = (digits.images[i] / 16.0 * 255.0).astype(np.uint8)
                image = Image.fromarray(255 - gray).resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
                image.save(folder / f"{i:04d}.png")
        (tmp / ".complete").write_text("ok\n")
    return root
