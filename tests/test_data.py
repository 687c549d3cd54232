"""Image-folder discovery, validation and decoding on real files with the awkward cases users have."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from edgekit.artifacts import Preprocessing
from edgekit.data import (Augmentation, calibration_sample, class_weights, folder_fingerprint, images_sha256,
                          load_folder_arrays, load_image, load_splits, scan_image_folder, stratified_split)
from edgekit.errors import DataError, UsageError


def _photo(path, mode="RGB", size=(40, 30), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    if mode in ("RGB", "CMYK", "RGBA"):
        channels = len(mode)
        image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8), mode)
    elif mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (size[1], size[0]), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8), "L").convert(mode)
    image.save(path, format=fmt)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    for cls in ("cat", "dog"):
        for i in range(5):
            _photo(root / cls / f"{i}.jpg")
    return root


def test_scan_lists_classes_sorted_with_every_image(folder):
    found = scan_image_folder(folder)
    assert found.classes == ["cat", "dog"]
    assert found.counts() == {"cat": 5, "dog": 5}


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")


def test_folder_without_class_subfolders_names_the_layout(tmp_path):
    _photo(tmp_path / "flat" / "a.jpg")
    with pytest.raises(DataError, match="no class sub-folders") as err:
        scan_image_folder(tmp_path / "flat")
    assert "<class name>" in err.value.fix


def test_class_folder_without_images_is_named(folder):
    (folder / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class"):
        scan_image_folder(folder)


def test_corrupt_images_are_skipped_with_a_count_or_fail_with_strict(folder):
    (folder / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (folder / "cat" / "notes.txt").write_text("hello")
    (folder / "dog" / "empty.png").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 3 unreadable"):
        found = scan_image_folder(folder)
    assert found.counts() == {"cat": 5, "dog": 5}
    assert {p.name for p, _ in found.skipped} == {"broken.jpg", "notes.txt", "empty.png"}
    with pytest.raises(DataError, match="broken.jpg|empty.png|notes.txt") as err:
        scan_image_folder(folder, strict=True)
    assert "--strict" in err.value.fix


def test_folder_of_only_corrupt_images_fails(tmp_path):
    for i in range(3):
        (tmp_path / "x" / "a").mkdir(parents=True, exist_ok=True)
        (tmp_path / "x" / "a" / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="fewer than 1 usable image.*3 unreadable file"):
        scan_image_folder(tmp_path / "x")


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "1"])
def test_every_colour_mode_decodes_to_rgb_uint8(tmp_path, mode):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = _photo(tmp_path / f"img{suffix}", mode=mode)
    pixels = load_image(path, (16, 16))
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8


def test_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "t.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(path)
    assert (load_image(path) == 255).all()


def test_paths_with_spaces_and_unicode_work(tmp_path):
    root = tmp_path / "my photos"
    _photo(root / "chaussures été" / "é 1.png")
    _photo(root / "帽子" / "写真 2.png")
    found = scan_image_folder(root)
    assert found.counts() == {"chaussures été": 1, "帽子": 1}
    assert load_image(found.paths[1], (8, 8)).shape == (8, 8, 3)


def test_very_large_jpeg_is_decoded_at_reduced_scale(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    # A smooth gradient (random noise would not survive any downscale the same way twice).
    y, x = np.mgrid[0:3000, 0:4000]
    pixels = np.stack([x * 255 // 3999, y * 255 // 2999, (x + y) * 255 // 6998], axis=-1).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    decoded_sizes = []
    real_load = JpegImagePlugin.JpegImageFile.load

    def recording_load(image):  # the real decoder runs; we only note the size it decodes at
        decoded_sizes.append(image.size)
        return real_load(image)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", recording_load)
    small = load_image(path, (64, 64))
    monkeypatch.undo()

    assert small.shape == (64, 64, 3)
    # libjpeg's DCT scaling (Image.draft) decoded 1/8 of each side, not 12 Mpx.
    assert decoded_sizes and decoded_sizes[0] == (500, 375)
    full = np.asarray(Image.open(path).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.int16)
    assert np.abs(small.astype(np.int16) - full).mean() < 3  # same picture as a full decode


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    _photo(tmp_path / "bomb" / "a" / "x.png", size=(300, 300))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match="DecompressionBomb"):
        scan_image_folder(tmp_path / "bomb")


def test_seeded_split_is_stratified_and_reproducible(folder):
    first = load_splits(folder, validation_fraction=0.4, seed=3)
    second = load_splits(folder, validation_fraction=0.4, seed=3)
    assert first.train.paths == second.train.paths and first.val.paths == second.val.paths
    assert first.val.counts() == {"cat": 2, "dog": 2}
    assert not set(first.train.paths) & set(first.val.paths)


def test_explicit_val_folder_is_used_and_must_share_classes(tmp_path):
    for split in ("train", "val"):
        for cls in ("a", "b"):
            _photo(tmp_path / split / cls / "1.png")
    splits = load_splits(tmp_path)
    assert splits.source == "folders" and splits.val.counts() == {"a": 1, "b": 1}
    _photo(tmp_path / "val" / "zebra" / "1.png")
    with pytest.raises(DataError, match="zebra"):
        load_splits(tmp_path)


def test_validation_fraction_outside_unit_interval_is_refused(folder):
    with pytest.raises(UsageError, match="val-fraction"):
        load_splits(folder, validation_fraction=1.0)


def test_stratified_split_keeps_one_of_each_class_on_both_sides():
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    train, val = stratified_split(labels, 0.1, seed=0)
    assert set(labels[train]) == {0, 1} and set(labels[val]) == {0, 1}


def test_class_weights_balance_rare_classes():
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights[1] == pytest.approx(3 * weights[0])


def test_calibration_sample_is_stratified_and_seeded(folder):
    found = scan_image_folder(folder)
    sample = calibration_sample(found, 4, seed=1)
    assert len(sample.items) == 4 and sample.counts() == {"cat": 2, "dog": 2}
    assert sample.paths == calibration_sample(found, 4, seed=1).paths


def test_augmentation_is_deterministic_for_a_seed_and_keeps_shape():
    pixels = np.random.default_rng(0).integers(0, 255, (3, 24, 24, 3), dtype=np.uint8)
    first = Augmentation().apply(pixels, np.random.default_rng(7))
    second = Augmentation().apply(pixels, np.random.default_rng(7))
    assert first.shape == pixels.shape and np.array_equal(first, second) and not np.array_equal(first, pixels)


def test_embedded_digits_dataset_has_ten_real_classes(digits_dir):
    train = scan_image_folder(digits_dir / "train")
    assert train.classes == [str(d) for d in range(10)] and len(train.items) > 1000
    assert load_image(train.paths[0], (32, 32)).std() > 10  # real strokes, not a blank image
    assert Preprocessing(size=(32, 32)).size == (32, 32)


def test_a_truncated_jpeg_is_skipped_at_indexing_so_loading_never_meets_it(tmp_path):
    # verify() reads only the header: this file passes it and used to fail later, at load time.
    folder = tmp_path / "photos"
    for label, color in (("a", (200, 30, 30)), ("b", (30, 30, 200))):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (96, 96), color).save(folder / label / f"{i}.jpg", quality=95)
    broken = folder / "a" / "truncated.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(broken, quality=95)
    broken.write_bytes(broken.read_bytes()[:2000])
    with Image.open(broken) as image:
        image.verify()  # the header alone looks fine
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        scanned = scan_image_folder(folder)
    assert broken not in scanned.paths and [p for p, _ in scanned.skipped] == [broken]
    pixels, labels = load_folder_arrays(scanned, Preprocessing(size=(32, 32), mean=(0,) * 3, std=(1,) * 3))
    assert pixels.shape == (6, 32, 32, 3) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(DataError, match="truncated"):
        scan_image_folder(folder, strict=True)


def test_the_images_digest_follows_their_bytes_where_the_cache_key_follows_mtimes(folder, tmp_path):
    """images_sha256 is what a manifest records; folder_fingerprint (path, size, mtime) only keys caches."""
    digest, key = images_sha256({"train": scan_image_folder(folder)}), folder_fingerprint(folder)
    photo = folder / "cat" / "0.jpg"
    stat = photo.stat()
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**10))
    assert folder_fingerprint(folder) != key and images_sha256({"train": scan_image_folder(folder)}) == digest
    assert images_sha256({"train": scan_image_folder(shutil.copytree(folder, tmp_path / "copy"))}) == digest
    assert images_sha256({"val": scan_image_folder(folder)}) != digest  # which images validated is part of it
    key = folder_fingerprint(folder)
    data = bytearray(photo.read_bytes())
    assert data[6:11] == b"JFIF\0"
    data[15] ^= 1  # the JFIF header's X density: same size, same pixels, one byte different
    photo.write_bytes(bytes(data))
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**10))
    images = scan_image_folder(folder)
    assert len(images.items) == 10 and folder_fingerprint(folder) == key  # still decodes; the cache key misses it
    assert images_sha256({"train": images}) != digest
