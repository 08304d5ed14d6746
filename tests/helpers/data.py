"""Synthetic MNIST-shaped data: raw npz arrays, prepared arrays, and ways to damage them."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import config, preprocess

from .http import closed_port_url

KEYS = ("x_train", "y_train", "x_test", "y_test")


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 784) float32 images whose label is which of ten pixel bands is lit, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.uniform(0, 0.3, (n, 784)).astype(np.float32)
    for i, label in enumerate(labels.tolist()):
        images[i, label * 78 : (label + 1) * 78] += 0.7
    return images, labels


def make_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """4 train and 3 test 28x28 uint8 images with labels 0-9, as mnist.npz holds them."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "y_train": np.array([0, 9, 3, 7], dtype=np.uint8),
        "x_test": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "y_test": np.array([1, 2, 8], dtype=np.uint8),
    }


def break_deflate_stream(path: Path, member: str = "x_train.npy") -> None:
    """Make `member`'s compressed data start with a reserved deflate block type (BTYPE=11)."""
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(member).header_offset
    raw = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", raw, offset + 26)
    raw[offset + 30 + name_length + extra_length] |= 0b110
    path.write_bytes(bytes(raw))


def write_prepared(folder: Path, train: int = 400, test: int = 100) -> Path:
    """A prepared-arrays folder, as the preprocess stage writes it, of synthetic digits."""
    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train = synthetic_digits(train, seed=1)
    x_test, y_test = synthetic_digits(test, seed=2)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for key, array in arrays.items():
        np.save(folder / preprocess.FILES[key], array)
    meta = {
        "fingerprint": "synthetic",
        "source": "tests",
        "train_samples": train,
        "test_samples": test,
    }
    (folder / preprocess.META).write_text(json.dumps(meta))
    return folder


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def array_fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """Computed here, independently of download.fingerprint."""
    return hashlib.sha256(b"".join(arrays[key].tobytes() for key in KEYS)).hexdigest()


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def assert_same_arrays(path: Path, expected: dict[str, np.ndarray]) -> None:
    actual = load_arrays(path)
    assert sorted(actual) == sorted(expected)
    for key, array in expected.items():
        np.testing.assert_array_equal(actual[key], array, err_msg=key)
        assert actual[key].dtype == array.dtype


@dataclass
class Synthetic:
    """A tiny mnist.npz standing in for the real one, and the digests that identify it."""

    path: Path
    arrays: dict[str, np.ndarray]
    sha256: str
    fingerprint: str

    def data(self, url: str | None = None) -> config.DataConfig:
        """By default data.url refuses connections: a test that reaches it fails fast."""
        return config.DataConfig(
            url=url or closed_port_url(), sha256=self.sha256, fingerprint=self.fingerprint
        )


def write_synthetic_mnist(path: Path) -> Synthetic:
    """make_arrays() saved as an npz at `path`, as the DataConfig of the tests expects it."""
    arrays = make_arrays()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return Synthetic(path, arrays, sha256_of(path), array_fingerprint(arrays))


def leftover_temp_files(folder: Path) -> list[str]:
    """The download stage's temporary files of mnist.npz left in `folder`."""
    return sorted(p.name for p in folder.glob(".mnist.npz.*.part"))


def write_raw_project(folder: Path) -> Path:
    """A project folder with the real composed params.yaml and a synthetic raw npz
    (make_arrays()), as the preprocess stage finds it."""
    (folder / "data" / "raw").mkdir(parents=True)
    (folder / "params.yaml").write_text(config.dump(config.compose()))
    np.savez(folder / "data" / "raw" / "mnist.npz", **make_arrays())
    return folder
