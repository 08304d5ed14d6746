"""pipeline/training/checkpoints.py with train.train, on tiny synthetic digits: a training goes on
from the latest checkpoint at or below its epochs with the same result as from scratch (model file,
weights, history); what decides a training keys it; the cache survives damage and keeps to its size
bound; the switch and the command that empties it."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import subprocess
import sys

import pytest

from pipeline import config
from pipeline.common import provenance, sources
from pipeline.training import checkpoints, engine, model

from .helpers import ROOT

FINGERPRINT = "f" * 64


def _cfg(base: config.Config, epochs: int, **train_values) -> config.Config:
    return dataclasses.replace(
        base, train=dataclasses.replace(base.train, epochs=epochs, **train_values)
    )


def _stopping(patience: int, min_delta: float) -> config.EarlyStoppingConfig:
    return config.EarlyStoppingConfig(True, config.Monitor.val_loss, patience, min_delta)


@pytest.fixture
def cache(tmp_path) -> checkpoints.Cache:
    return checkpoints.Cache(tmp_path / "checkpoints", 2**30)


def _training(cache, cfg, fingerprint=FINGERPRINT, environment=None):
    return cache.training(checkpoints.key(cfg, fingerprint, environment or {"cpus": "2"}))


@pytest.fixture
def trained(tmp_path, tiny_data):
    """A training's model file (its bytes), weights digest and history."""
    made = itertools.count()

    def run(cfg, saved_in=None, seen=None):
        net, history = engine.train(
            cfg,
            *tiny_data,
            verbose=0,
            saved_in=saved_in,
            on_epoch=None if seen is None else lambda e, values: seen.append((e, values)),
        )
        path = tmp_path / f"model-{next(made)}.keras"
        model.save(net, path)
        return path.read_bytes(), provenance.weights_digest(net.get_weights()), history

    return run


def test_a_longer_training_goes_on_from_a_shorter_one_bit_for_bit(tiny_cfg, cache, trained):
    scratch = trained(_cfg(tiny_cfg, 4))
    saved_in = _training(cache, tiny_cfg)
    trained(_cfg(tiny_cfg, 2), saved_in)
    assert saved_in.started_from == 0
    seen: list = []
    extended = trained(_cfg(tiny_cfg, 4), saved_in, seen)
    assert saved_in.started_from == 2
    assert extended[0] == scratch[0], "the model file differs from a training from scratch"
    assert extended[1] == scratch[1]
    assert extended[2].equals(scratch[2]), "the history differs"
    # All four epochs reach the run; the two trained here carry their wall time.
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    assert ["epoch_time_s" in values for _, values in seen] == [False, False, True, True]
    assert {values["learning_rate"] for _, values in seen} == {tiny_cfg.train.learning_rate}
    assert seen[0][1]["val_accuracy"] == scratch[2]["val_accuracy"].iloc[0]


def test_a_training_already_cached_trains_nothing_and_gives_the_same_model(
    tiny_cfg, cache, trained
):
    saved_in = _training(cache, tiny_cfg)
    trained(_cfg(tiny_cfg, 3), saved_in)
    seen: list = []
    again = trained(_cfg(tiny_cfg, 2), saved_in, seen)
    assert saved_in.started_from == 2
    assert not any("epoch_time_s" in values for _, values in seen), "an epoch was trained"
    assert again[:2] == trained(_cfg(tiny_cfg, 2))[:2]


@pytest.mark.parametrize(
    ("patience", "min_delta", "stops_at"),
    [(1, 0.5, 2), (2, 0.0, None)],  # stops inside the cached epochs; never stops
)
def test_early_stopping_goes_on_from_checkpoints_as_it_would_have_run(
    tiny_cfg, cache, patience, min_delta, stops_at, trained
):
    saved_in = _training(cache, tiny_cfg)
    trained(_cfg(tiny_cfg, 4), saved_in)  # no early stopping: the same key
    cfg = _cfg(tiny_cfg, 6, early_stopping=_stopping(patience, min_delta))
    resumed = trained(cfg, saved_in)
    scratch = trained(cfg)
    assert saved_in.started_from == (stops_at or 4)
    assert resumed[:2] == scratch[:2]
    assert resumed[2].equals(scratch[2])
    assert len(scratch[2]) == (stops_at or 6)


@pytest.mark.parametrize(
    "change",
    [
        {"batch_size": 8},
        {"learning_rate": 0.02},
        {"seed": 7},
        {"optimizer": config.Optimizer.adam},
        {"train_sample": 10},
    ],
    ids=lambda change: next(iter(change)),
)
def test_what_decides_the_numbers_forces_a_fresh_start(tiny_cfg, cache, change, trained):
    trained(_cfg(tiny_cfg, 2), _training(cache, tiny_cfg))
    other = _cfg(tiny_cfg, 3, **change)
    saved_in = _training(cache, other)
    trained(other, saved_in)
    assert saved_in.started_from == 0


def test_the_data_and_the_environment_key_the_training_and_the_epochs_do_not(tiny_cfg):
    keyed = checkpoints.Cache(ROOT, 1).training
    base = keyed(checkpoints.key(tiny_cfg, FINGERPRINT, {"cpus": "2"})).key
    assert keyed(checkpoints.key(tiny_cfg, "e" * 64, {"cpus": "2"})).key != base
    assert keyed(checkpoints.key(tiny_cfg, FINGERPRINT, {"cpus": "4"})).key != base
    longer = _cfg(tiny_cfg, 30, early_stopping=_stopping(3, 0.01))
    elsewhere = dataclasses.replace(
        longer,
        paths=dataclasses.replace(longer.paths, model="job/model.keras"),
        tracking=dataclasses.replace(longer.tracking, experiment="other"),
    )
    assert keyed(checkpoints.key(elsewhere, FINGERPRINT, {"cpus": "2"})).key == base


@pytest.mark.parametrize(
    "edited, misses",
    [
        ("pipeline/tracking/record.py", False),  # rewording an MLflow tag
        ("pipeline/download.py", False),  # or a download message
        ("pipeline/common/entry.py", False),
        ("pipeline/train.py", False),  # the stage around the engine
        ("pipeline/sweep/report.py", False),
        ("pipeline/training/engine.py", True),
        ("pipeline/training/callbacks.py", True),
        ("pipeline/training/model.py", True),
    ],
)
def test_the_engines_code_keys_it_and_no_other_code_does(
    tiny_cfg, tmp_path, monkeypatch, edited, misses
):
    for name in sources.closure("pipeline.sweep"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    monkeypatch.setattr(sources, "ROOT", tmp_path)
    before = checkpoints.key(tiny_cfg, FINGERPRINT, {})
    with (tmp_path / edited).open("a") as source:
        source.write("# edited\n")
    assert (checkpoints.key(tiny_cfg, FINGERPRINT, {}) != before) is misses


def test_a_damaged_checkpoint_is_skipped_and_its_epochs_trained_again(
    tiny_cfg, cache, caplog, trained
):
    saved_in = _training(cache, tiny_cfg)
    trained(_cfg(tiny_cfg, 3), saved_in)
    weights = saved_in.folder / "00003.npz"
    damaged = bytearray(weights.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    with caplog.at_level(logging.WARNING):
        again = trained(_cfg(tiny_cfg, 3), saved_in)
    assert saved_in.started_from == 2
    assert "00003.json is damaged (its weights do not match" in caplog.text
    assert again[:2] == trained(_cfg(tiny_cfg, 3))[:2]
    # Trained again, epoch 3 is kept again, whole.
    assert saved_in.read(3) is not None


def test_a_truncated_record_is_skipped(tiny_cfg, cache, caplog, trained):
    saved_in = _training(cache, tiny_cfg)
    trained(_cfg(tiny_cfg, 2), saved_in)
    record = saved_in.folder / "00002.json"
    record.write_text(record.read_text()[:100])
    with caplog.at_level(logging.WARNING):
        assert saved_in.read(2) is None
    assert "00002.json is damaged" in caplog.text
    assert not record.exists() and not (saved_in.folder / "00002.npz").exists()


def test_the_cache_keeps_to_its_size_least_recently_used_first(tiny_cfg, trained, tmp_path):
    unbounded = checkpoints.Cache(tmp_path / "checkpoints", 2**30)
    saved_in = _training(unbounded, tiny_cfg)
    trained(_cfg(tiny_cfg, 4), saved_in)
    one = sum(p.stat().st_size for p in saved_in.folder.glob("00001.*"))
    assert saved_in.read(1) is not None  # epoch 1 used last, then 4, 3, 2 before it
    bounded = checkpoints.Cache(unbounded.folder, int(2.5 * one))
    bounded.evict()
    assert saved_in.epochs(at_most=4) == [4, 1]
    assert sum(size for _, size, _ in bounded.units()) <= bounded.max_bytes


def test_off_is_one_switch(tiny_cfg, tmp_path):
    off = dataclasses.replace(
        tiny_cfg, checkpoints=dataclasses.replace(tiny_cfg.checkpoints, enabled=False)
    )
    assert checkpoints.Cache.when_enabled(off.checkpoints) is None
    on = checkpoints.Cache.when_enabled(tiny_cfg.checkpoints)
    assert on is not None and on.folder == tmp_path / ".checkpoints"  # DVC_ROOT: tmp_path


def test_the_cache_is_listed_and_emptied_by_one_command(tiny_cfg, trained, tmp_path):
    (tmp_path / "params.yaml").write_text(config.dump(config.to_dict(tiny_cfg)))
    saved_in = _training(checkpoints.Cache.when_enabled(tiny_cfg.checkpoints), tiny_cfg)
    trained(_cfg(tiny_cfg, 2), saved_in)

    def command(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.training.checkpoints", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = command()
    assert "2 checkpoints" in listed and "epochs [1, 2]" in listed
    assert f"batch_size={tiny_cfg.train.batch_size}" in listed
    assert "MB freed" in command("clear")
    assert not saved_in.folder.exists()
    assert "0 checkpoints" in command("list")


def test_a_record_holds_what_the_next_epoch_needs(tiny_cfg, cache, trained):
    saved_in = _training(cache, tiny_cfg)
    trained(_cfg(tiny_cfg, 1), saved_in)
    record = json.loads((saved_in.folder / "00001.json").read_text())
    assert record["key"] == saved_in.key and record["epoch"] == 1
    assert [row["epoch"] for row in record["history"]] == [1]
    numpy_state = record["random_state"][0]
    assert numpy_state[0] == "MT19937" and len(numpy_state[1]) == 624
    about = json.loads((saved_in.folder / "key.json").read_text())
    assert about["data_fingerprint"] == FINGERPRINT and "epochs" not in about["train"]
