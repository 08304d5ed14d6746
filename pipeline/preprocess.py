"""Stage 2: check the raw arrays, then cache them as (N, 784) float32 in [0, 1].

The outputs are plain `.npy` files (memory-mappable, no pickle) plus `meta.json` with the
arrays' fingerprint and counts for tracking. No TensorFlow or MLflow here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline import PipelineError, config
from pipeline.common import entry, files
from pipeline.common.mnist import ARRAY_KEYS, NUM_CLASSES, SIDE, fingerprint

log = logging.getLogger(__name__)

IMAGE_SHAPE = (SIDE, SIDE)
# What preprocess writes into paths.prepared; dvc.yaml lists the same names.
FILES = {
    "x_train": "x_train.npy",
    "y_train": "y_train.npy",
    "x_test": "x_test.npy",
    "y_test": "y_test.npy",
}
META = "meta.json"


class DataError(PipelineError, ValueError):
    """The raw arrays are not MNIST-shaped; the message names the array and the problem."""


def _require_keys(found: list[str], where: str) -> None:
    missing = [key for key in ARRAY_KEYS if key not in found]
    if missing:
        raise DataError(
            f"{where}: missing array(s) {', '.join(missing)}; found {', '.join(found) or 'none'}"
        )


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read the four arrays, refusing pickled (object) arrays and unreadable files."""
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DataError(
            f"{path} is not an .npz (zip) file; delete it and rerun `dvc repro` "
            "to download it again"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            found = npz.files
            arrays = {key: npz[key] for key in ARRAY_KEYS if key in found}
    except ValueError as err:
        raise DataError(f"{path}: {err} (object arrays are never unpickled)") from None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise DataError(
            f"{path} is not a readable .npz ({err}); delete it and rerun "
            "`dvc repro` to download it again"
        ) from None
    _require_keys(found, str(path))
    return arrays


def validate(arrays: dict[str, np.ndarray]) -> None:
    """Check keys, shapes, dtypes and label range; raise DataError naming the first problem."""
    _require_keys(list(arrays), "arrays")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            bad = f"x_{split}" if x.dtype != np.uint8 else f"y_{split}"
            raise DataError(f"{bad} has dtype {arrays[bad].dtype}, expected uint8")
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE or len(x) == 0:
            raise DataError(f"x_{split} has shape {x.shape}, expected (N, 28, 28) with N > 0")
        if y.shape != (len(x),):
            raise DataError(
                f"y_{split} has shape {y.shape}, expected ({len(x)},) to match x_{split}"
            )
        if y.max() >= NUM_CLASSES:
            raise DataError(f"y_{split} holds label {int(y.max())}, expected labels 0-9")


def scale(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 784) float32 in [0, 1], as the notebook does."""
    return images.reshape(len(images), -1).astype(np.float32) / 255


def prepare(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    validate(arrays)
    return {
        "x_train": scale(arrays["x_train"]),
        "y_train": arrays["y_train"],
        "x_test": scale(arrays["x_test"]),
        "y_test": arrays["y_test"],
    }


def require(prepared: Path) -> None:
    """Raise DataError unless `prepared` holds every prepared array and the meta file."""
    missing = [name for name in (*FILES.values(), META) if not (prepared / name).is_file()]
    if missing:
        raise DataError(
            f"{prepared} lacks {', '.join(missing)}: run `dvc repro preprocess`, "
            "or set paths.prepared to a folder that has them"
        )


def load_split(prepared: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of 'train' or 'test' from the prepared cache, read-only. Each file is read from
    disk once per process while it stays the same, so the jobs of a sweep share the arrays."""
    require(prepared)
    return _read(prepared / FILES[f"x_{split}"]), _read(prepared / FILES[f"y_{split}"])


def _read(path: Path) -> np.ndarray:
    stat = path.stat()  # a file rewritten since (`dvc repro preprocess`) is read again
    return _read_unchanged(path.resolve(), stat.st_ino, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=len(FILES))
def _read_unchanged(path: Path, inode: int, mtime_ns: int, size: int) -> np.ndarray:
    # Mapped, read-only: opened at once, read as training needs it, shared by the jobs of a
    # sweep, none of which can change what the next one trains on.
    return np.load(path, mmap_mode="r", allow_pickle=False)


def read_meta(prepared: Path) -> dict:
    require(prepared)
    return json.loads((prepared / META).read_text())


@contextlib.contextmanager
def up_to_date(cfg: config.Config) -> Iterator[None]:
    """Bring the prepared arrays up to date, once before a sweep's first job, while the block
    runs (the sweep meanwhile opens its store); they are when it ends.

    The pipeline's own arrays (`paths.prepared` as in params.yaml) belong to DVC: `dvc repro
    preprocess` reruns download and preprocess only if an input changed or an output is
    missing, and is a no-op otherwise. Arrays anywhere else are the user's, used as they are.
    """
    prepared = Path(cfg.paths.prepared)
    params = config.load() if Path("dvc.yaml").is_file() else None
    if params is None or Path(params.paths.prepared).resolve() != prepared.resolve():
        require(prepared)
        log.info("using the prepared arrays in %s as they are", prepared)
        yield
        return
    if (params.data, params.paths.raw) != (cfg.data, cfg.paths.raw):
        raise config.ConfigError(
            "conf/ and params.yaml disagree on `data` or `paths.raw`: "
            "recompose params.yaml with `make params`, or set "
            "paths.prepared to arrays of your own"
        )
    command = [sys.executable, "-m", "dvc", "repro", "preprocess"]
    # In a session of its own: a terminal's Ctrl-C or hangup stops the sweep, which then stops
    # DVC as below, never in the middle of writing its lock file (.dvc/tmp/rwlock).
    process = subprocess.Popen(command, start_new_session=True)
    try:
        yield
        returncode = process.wait()
    finally:
        if process.poll() is None:
            _stop(process)
    if returncode:
        raise PipelineError(f"`{' '.join(command[2:])}` failed: see its output above")


def _stop(dvc: subprocess.Popen, finish: float = 2.0, unwind: float = 10.0) -> None:
    """Stop `dvc repro` as Ctrl-C stops it, so it releases its locks, unless it finishes in
    `finish` seconds by itself (a repro with nothing to do takes one or two); SIGTERM and
    SIGKILL only if it is still there `unwind` seconds later."""
    for signum, wait in ((None, finish), (signal.SIGINT, unwind)):
        if signum is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(dvc.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            dvc.wait(wait)
            return
    entry.stop_group(dvc, grace=5)


def main(argv: list[str] | None = None) -> None:
    entry.parser("pipeline.preprocess", __doc__).parse_args(argv)
    cfg = config.load()
    raw, out = Path(cfg.paths.raw), Path(cfg.paths.prepared)
    arrays = load_npz(raw)
    prepared = prepare(arrays)
    for key, array in prepared.items():
        with files.replacing(out / FILES[key], suffix=".npy") as tmp:
            np.save(tmp, array, allow_pickle=False)
    meta = {
        "fingerprint": fingerprint(arrays),
        "source": str(raw),
        "train_samples": len(prepared["x_train"]),
        "test_samples": len(prepared["x_test"]),
    }
    files.write_text(out / META, json.dumps(meta, indent=2) + "\n")
    log.info(
        "wrote %d train and %d test samples to %s",
        meta["train_samples"],
        meta["test_samples"],
        out,
    )


if __name__ == "__main__":
    entry.run(main)
