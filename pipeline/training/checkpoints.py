"""The checkpoint cache: every epoch a training finishes is kept, so no epoch is trained twice.

A training is keyed by all that decides its numbers except how long it runs: the data's
fingerprint, the model and training config without `train.epochs` and early stopping (which only
decide where it stops), the training engine's code (`sources.digest("pipeline.training.engine")`:
its own closure, not tracking's or the downloader's) and the environment facts that change the
numbers (`provenance.environment`). Under its key, epoch N's checkpoint holds what epoch N+1 needs
to run exactly as it would have: the training state `engine.state` gives (the model's and
optimizer's variables, as an .npz file), NumPy's and Python's random states, and the history of
epochs 1 to N. The engine (`pipeline.training.engine`) asks for the checkpoint with the most epochs
at or below N (`Training.latest`) and hands each new epoch to `Training.write`: it extends a
shorter training, resumes a killed one, and shares a sweep's common epochs, with the same result to
the bit. This module stores and finds; it never touches a model.

`BackupAndRestore` keeps one backup per folder, writes it in place with h5py, deletes it
when training ends and restores neither the data order nor the history: hence these files.
The cache never changes a result or loses one: files are written atomically; a read is
verified against the sha256 its record holds (a damaged checkpoint is skipped with a warning,
removed, and its epochs trained again); a write that fails (a full disk) is a warning and
training goes on; the cache stays under its size bound, least recently used first.

    python -m pipeline.training.checkpoints           # what the cache holds
    python -m pipeline.training.checkpoints clear     # empty it
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import config
from pipeline.common import files, project, sources

log = logging.getLogger(__name__)

FORMAT = 1  # of the files; a new format starts a new cache
WEIGHTS, RECORD, ABOUT = ".npz", ".json", "key.json"
Row = dict[str, float]  # an epoch of history, by metric (the engine's callbacks keep them)


def key(cfg: config.Config, fingerprint: str, environment: Mapping[str, str]) -> dict[str, Any]:
    """What decides a training's epochs, whatever their number: the key's content."""
    plain = config.to_dict(cfg)
    trained = {k: v for k, v in plain["train"].items() if k not in ("epochs", "early_stopping")}
    return {
        "format": FORMAT,
        "data_fingerprint": fingerprint,
        "model": plain["model"],
        "train": trained,
        "code": sources.digest("pipeline.training.engine"),
        "environment": dict(environment),
    }


def _epochs(folder: Path) -> list[int]:
    """The epochs with a record in a training's folder, in order."""
    found = (p.name.removesuffix(RECORD) for p in folder.glob(f"*{RECORD}"))
    return sorted(map(int, filter(str.isdigit, found)))


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class Saved:
    """A verified checkpoint: the training state after `epoch`, and the history up to it."""

    epoch: int
    rows: list[Row]
    weights: bytes  # the model's and its optimizer's variables, an .npz file
    random_state: list  # NumPy's and Python's, as `engine.random_state()` gives them


class Cache:
    """The folder of checkpoints, bounded to `max_bytes`."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    @classmethod
    def when_enabled(cls, settings: config.CheckpointsConfig) -> Cache | None:
        """The cache the config names (its folder relative to the project root); None when
        `checkpoints.enabled` is false."""
        return cls.configured(settings) if settings.enabled else None

    @classmethod
    def configured(cls, settings: config.CheckpointsConfig) -> Cache:
        """The cache's folder, whether it is enabled or not (to list or empty it)."""
        return cls(project.root() / settings.dir, settings.max_size_mb * 2**20)

    def training(self, content: dict[str, Any]) -> Training:
        """The checkpoints of the training that `content` (from `key()`) describes."""
        digest = _sha256(json.dumps(content, sort_keys=True).encode())
        return Training(self, digest, content)

    def units(self) -> list[tuple[float, int, list[Path]]]:
        """Each checkpoint's files with when it was last used and its size in bytes."""
        found: dict[Path, list[Path]] = {}
        for path in self.folder.glob("*/*"):
            if path.name == ABOUT:
                continue
            if path.name.startswith("."):  # a write under way, or one a killed writer left
                stem = path.name[1:].partition(".")[0]
                for name in (stem + RECORD, stem + WEIGHTS, ABOUT):
                    files.remove_orphans(path.parent / name)
                continue
            found.setdefault(path.with_name(path.name.partition(".")[0]), []).append(path)
        units = []
        for paths in found.values():
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile by another job
                stats = [path.stat() for path in paths]
                used = max(stat.st_mtime for stat in stats)
                units.append((used, sum(stat.st_size for stat in stats), paths))
        return sorted(units, key=lambda unit: unit[0])

    def evict(self) -> None:
        """Remove the least recently used checkpoints until the cache fits its bound."""
        units = self.units()
        total = sum(size for _, size, _ in units)
        for _, size, paths in units:
            if total <= self.max_bytes:
                break
            for path in sorted(paths, key=lambda p: p.suffix != RECORD):  # the record first
                path.unlink(missing_ok=True)
            total -= size
            log.debug("evicted checkpoint %s", paths[0].with_suffix(""))

    def clear(self) -> int:
        """Empty the cache; the bytes it held."""
        held = sum(size for _, size, _ in self.units())
        shutil.rmtree(self.folder, ignore_errors=True)
        return held


class Training:
    """One training's checkpoints, in `<cache>/<key>/`: `00005.npz` (the variables) and its record
    `00005.json` (written last: a checkpoint without its record does not count)."""

    def __init__(self, cache: Cache, digest: str, content: dict[str, Any]) -> None:
        self.cache = cache
        self.key = digest
        self.content = content
        self.folder = cache.folder / digest
        self.started_from = 0  # the epoch `engine.train` went on from; 0: from scratch

    def _paths(self, epoch: int) -> tuple[Path, Path]:
        stem = self.folder / f"{epoch:05d}"
        return stem.with_name(stem.name + RECORD), stem.with_name(stem.name + WEIGHTS)

    def epochs(self, at_most: int) -> list[int]:
        """The epochs with a record here, at most `at_most`, the latest first."""
        return sorted((e for e in _epochs(self.folder) if e <= at_most), reverse=True)

    def latest(self, at_most: int) -> Saved | None:
        """The verified checkpoint with the most epochs at or below `at_most`; None if none."""
        for epoch in self.epochs(at_most):
            saved = self.read(epoch)
            if saved is not None:
                return saved
        return None

    def write(self, epoch: int, rows: list[Row], weights: bytes, random: list) -> None:
        """Keep the state after `epoch` (the variables as an .npz file, and the random state as
        the epoch's first step found it) with the history so far. A write that fails is a
        warning: the training goes on without this checkpoint."""
        record_path, weights_path = self._paths(epoch)
        try:
            if not (self.folder / ABOUT).is_file():
                files.write_text(self.folder / ABOUT, json.dumps(self.content, indent=1))
            with files.replacing(weights_path, suffix=WEIGHTS) as tmp:
                tmp.write_bytes(weights)
            digest = _sha256(weights)
            record = {
                "format": FORMAT,
                "key": self.key,
                "epoch": epoch,
                "weights_sha256": digest,
                "history": rows,
                "random_state": random,
            }
            files.write_text(record_path, json.dumps(record))
        except Exception as err:  # a full disk, a file size limit, a read-only folder
            log.warning(
                "checkpoint of epoch %d not kept (%s): training goes on without it", epoch, err
            )
            return
        self.cache.evict()

    def read(self, epoch: int) -> Saved | None:
        """Epoch `epoch`'s checkpoint, verified; None if it is gone. A damaged one is removed
        with a warning, and None."""
        record_path, weights_path = self._paths(epoch)
        try:
            record = json.loads(record_path.read_text())
            weights = weights_path.read_bytes()
            if (record["format"], record["key"], record["epoch"]) != (FORMAT, self.key, epoch):
                raise ValueError("it belongs to another training")
            if _sha256(weights) != record["weights_sha256"]:
                raise ValueError("its weights do not match the digest in its record")
            saved = Saved(epoch, record["history"], weights, record["random_state"])
            if [row["epoch"] for row in saved.rows] != list(range(1, epoch + 1)):
                raise ValueError("its history does not run from epoch 1 to it")
        except FileNotFoundError:  # evicted meanwhile
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning(
                "checkpoint %s is damaged (%s): skipped and removed; its epochs are trained again",
                record_path,
                err,
            )
            record_path.unlink(missing_ok=True)
            weights_path.unlink(missing_ok=True)
            return None
        for path in (record_path, weights_path):  # last used now, for the size bound
            with contextlib.suppress(OSError):
                os.utime(path)
        return saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.training.checkpoints",
        description="List the checkpoint cache (checkpoints.dir in params.yaml), or empty it.",
    )
    parser.add_argument("action", nargs="?", choices=["list", "clear"], default="list")
    args = parser.parse_args(argv)
    settings = config.load().checkpoints
    cache = Cache.configured(settings)
    if args.action == "clear":
        print(f"emptied {cache.folder}: {cache.clear() / 2**20:.1f} MB freed")  # noqa: T201
        return
    units = cache.units()
    print(  # noqa: T201
        f"{cache.folder}: {len(units)} checkpoints, "
        f"{sum(size for _, size, _ in units) / 2**20:.1f} MB of {settings.max_size_mb} MB"
        + ("" if settings.enabled else " (checkpoints.enabled is false)")
    )
    for folder in sorted(p for p in cache.folder.glob("*") if p.is_dir()):
        with contextlib.suppress(OSError, ValueError):
            about = json.loads((folder / ABOUT).read_text())
            train = " ".join(f"{k}={v}" for k, v in about["train"].items())
            print(f"  {folder.name[:12]}  epochs {_epochs(folder)}  {train}")  # noqa: T201


if __name__ == "__main__":
    from pipeline.common import entry

    entry.run(main)
