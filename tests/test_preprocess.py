"""pipeline/preprocess.py on tiny synthetic MNIST-shaped arrays."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from pipeline import preprocess
from pipeline.common import mnist

from .helpers.data import KEYS, break_deflate_stream, make_arrays, write_raw_project

PREPARED_FILES = ["meta.json", "x_test.npy", "x_train.npy", "y_test.npy", "y_train.npy"]


def expected_scaled(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), 28 * 28).astype(np.float32) / np.float32(255)


class Tripwire:
    """Unpickling it creates `marker`: proof that a loader ran pickle on untrusted data."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


# ---------------------------------------------------------------- scale() and prepare()


def test_scale_flattens_to_float32_in_unit_range_keeping_pixel_order():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0, 0, 0] = 255
    images[0, 0, 1] = 51
    images[1, 27, 27] = 255
    images[1, 1, 0] = 102  # row 1, column 0 -> flat index 28

    scaled = preprocess.scale(images)

    assert scaled.shape == (2, 784)
    assert scaled.dtype == np.float32
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert scaled[0, 0] == 1.0 and scaled[1, 783] == 1.0
    assert scaled[0, 1] == pytest.approx(0.2)
    assert scaled[1, 28] == pytest.approx(0.4)
    assert scaled[0, 2] == 0.0
    np.testing.assert_array_equal(
        np.rint(scaled * 255).astype(np.uint8).reshape(images.shape), images
    )


def test_prepare_scales_images_and_keeps_labels():
    arrays = make_arrays()

    prepared = preprocess.prepare(arrays)

    assert sorted(prepared) == sorted(KEYS)
    np.testing.assert_array_equal(prepared["y_train"], [0, 9, 3, 7])
    np.testing.assert_array_equal(prepared["y_test"], [1, 2, 8])
    np.testing.assert_allclose(prepared["x_train"], expected_scaled(arrays["x_train"]))
    np.testing.assert_allclose(prepared["x_test"], expected_scaled(arrays["x_test"]))
    assert prepared["x_train"].shape == (4, 784) and prepared["x_test"].shape == (3, 784)


# ---------------------------------------------------------------- validate()


def replace(key: str, value: np.ndarray):
    def mutate(arrays: dict[str, np.ndarray]) -> None:
        arrays[key] = value

    return mutate


def set_label(key: str, index: int, label: int):
    def mutate(arrays: dict[str, np.ndarray]) -> None:
        arrays[key][index] = label

    return mutate


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        (replace("x_train", np.zeros((4, 28, 27), np.uint8)), ["x_train", "shape (4, 28, 27)"]),
        (replace("x_test", np.zeros((3, 784), np.uint8)), ["x_test", "shape (3, 784)"]),
        (replace("x_train", np.zeros((0, 28, 28), np.uint8)), ["x_train", "N > 0"]),
        (
            replace("x_train", np.zeros((4, 28, 28), np.float32)),
            ["x_train", "dtype float32", "expected uint8"],
        ),
        (replace("y_test", np.zeros(3, np.int64)), ["y_test", "dtype int64", "expected uint8"]),
        (set_label("y_train", 2, 10), ["y_train", "label 10", "expected labels 0-9"]),
        (replace("y_train", np.zeros(3, np.uint8)), ["y_train", "shape (3,)", "(4,)", "x_train"]),
        (replace("y_test", np.zeros((3, 1), np.uint8)), ["y_test", "shape (3, 1)", "(3,)"]),
    ],
    ids=["x-28x27", "x-flat", "x-empty", "x-float32", "y-int64", "label-10", "y-shorter", "y-2d"],
)
def test_validate_names_the_array_and_the_problem(mutate, fragments):
    arrays = make_arrays()
    mutate(arrays)

    with pytest.raises(preprocess.DataError) as excinfo:
        preprocess.validate(arrays)

    for fragment in fragments:
        assert fragment in str(excinfo.value)


def test_validate_names_a_missing_array():
    arrays = make_arrays()
    del arrays["x_test"]

    with pytest.raises(preprocess.DataError, match=r"missing array\(s\) x_test; found x_train"):
        preprocess.validate(arrays)


def test_validate_accepts_mnist_shaped_arrays():
    arrays = make_arrays()
    arrays["y_train"][:] = [0, 9, 9, 0]  # the extreme labels are valid

    assert preprocess.validate(arrays) is None  # no DataError

    prepared = preprocess.prepare(arrays)  # and they are prepared, labels as they were
    np.testing.assert_array_equal(prepared["y_train"], [0, 9, 9, 0])
    np.testing.assert_array_equal(prepared["y_test"], [1, 2, 8])
    np.testing.assert_allclose(prepared["x_train"], expected_scaled(arrays["x_train"]))
    assert prepared["x_train"].dtype == np.float32 and prepared["x_test"].shape == (3, 784)


# ---------------------------------------------------------------- load_npz()


def test_load_npz_reads_the_four_arrays(tmp_path):
    arrays = make_arrays()
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **arrays)

    loaded = preprocess.load_npz(path)

    assert sorted(loaded) == sorted(KEYS)
    for key in KEYS:
        np.testing.assert_array_equal(loaded[key], arrays[key])


def test_load_npz_lists_missing_and_found_keys(tmp_path):
    arrays = make_arrays()
    del arrays["y_test"]
    path = tmp_path / "mnist.npz"
    np.savez(path, images=arrays.pop("x_test"), **arrays)

    with pytest.raises(preprocess.DataError) as excinfo:
        preprocess.load_npz(path)

    message = str(excinfo.value)
    assert str(path) in message
    assert "missing array(s) x_test, y_test" in message
    assert "found images, x_train, y_train" in message


def test_load_npz_refuses_object_arrays_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    arrays = make_arrays()
    arrays["y_train"] = np.array([Tripwire(marker)] * 4, dtype=object)
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    assert pickle.loads(pickle.dumps(Tripwire(tmp_path / "probe"))) is None  # the trap works
    assert (tmp_path / "probe").is_dir()

    with pytest.raises(preprocess.DataError) as excinfo:
        preprocess.load_npz(path)

    assert str(path) in str(excinfo.value)
    assert "Object arrays cannot be loaded" in str(excinfo.value)
    assert not marker.exists()


def write_truncated(path: Path) -> None:
    np.savez(path, **make_arrays())
    path.write_bytes(path.read_bytes()[:2000])


def write_html_page(path: Path) -> None:
    path.write_text("<html><body>503 Service Unavailable</body></html>\n")


def write_empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("write_bad_file", [write_truncated, write_html_page, write_empty])
def test_load_npz_refuses_an_unreadable_file(tmp_path, write_bad_file):
    path = tmp_path / "mnist.npz"
    write_bad_file(path)

    with pytest.raises(preprocess.DataError) as excinfo:
        preprocess.load_npz(path)

    assert str(path) in str(excinfo.value)


def test_load_npz_suggests_a_fresh_download_for_a_truncated_file(tmp_path):
    path = tmp_path / "mnist.npz"
    write_truncated(path)

    with pytest.raises(preprocess.DataError, match=r"not an \.npz \(zip\) file.*dvc repro"):
        preprocess.load_npz(path)


def test_load_npz_refuses_a_missing_file(tmp_path):
    with pytest.raises(preprocess.DataError, match="not a readable .npz"):
        preprocess.load_npz(tmp_path / "absent.npz")


def test_load_npz_refuses_a_corrupt_compressed_file(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **make_arrays())
    break_deflate_stream(path)

    with pytest.raises(preprocess.DataError, match="is not a readable .npz"):
        preprocess.load_npz(path)


# ---------------------------------------------------------------- main()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder with the real composed params.yaml and a synthetic raw npz."""
    folder = write_raw_project(tmp_path / "project")
    monkeypatch.chdir(folder)
    return folder


def test_main_writes_the_prepared_cache_and_meta(project):
    arrays = make_arrays()
    prepared = project / "data" / "prepared"

    preprocess.main([])

    assert sorted(os.listdir(prepared)) == PREPARED_FILES  # and no temp file
    for split, count in (("train", 4), ("test", 3)):
        x, y = preprocess.load_split(prepared, split)
        assert x.shape == (count, 784) and x.dtype == np.float32
        np.testing.assert_array_equal(x, expected_scaled(arrays[f"x_{split}"]))
        np.testing.assert_array_equal(y, arrays[f"y_{split}"])
    meta = json.loads((prepared / "meta.json").read_text())
    assert preprocess.read_meta(prepared) == meta
    assert meta["train_samples"] == 4 and meta["test_samples"] == 3
    assert meta["fingerprint"] == mnist.fingerprint(arrays)
    assert (
        meta["fingerprint"]
        == hashlib.sha256(b"".join(arrays[key].tobytes() for key in KEYS)).hexdigest()
    )
    assert meta["source"] == "data/raw/mnist.npz"


def test_load_split_reads_a_file_once_until_it_is_rewritten(project):
    prepared = project / "data" / "prepared"
    preprocess.main([])

    x, y = preprocess.load_split(prepared, "test")
    again = preprocess.load_split(prepared, "test")
    assert again[0] is x and again[1] is y  # the next sweep job reads nothing from disk
    with pytest.raises(ValueError, match="read-only"):
        x[0, 0] = 1.0  # so no job can change the arrays the next job trains on

    changed = make_arrays()
    changed["y_test"] = (changed["y_test"] + 1) % 10
    np.savez(project / "data" / "raw" / "mnist.npz", **changed)
    preprocess.main([])

    x_new, y_new = preprocess.load_split(prepared, "test")
    np.testing.assert_array_equal(y_new, changed["y_test"])
    np.testing.assert_array_equal(x_new, x)


def test_main_refuses_a_bad_raw_file_and_leaves_nothing(project):
    raw = project / "data" / "raw" / "mnist.npz"
    arrays = make_arrays()
    arrays["y_test"][0] = 10
    np.savez(raw, **arrays)

    with pytest.raises(preprocess.DataError, match="y_test holds label 10"):
        preprocess.main([])

    prepared = project / "data" / "prepared"
    assert not prepared.exists() or os.listdir(prepared) == []
