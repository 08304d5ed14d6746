"""The checkpoint cache in a process of its own, with what the test process must not have: a
file-size limit that makes every checkpoint write fail, and Keras on JAX."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest

from pipeline.common import provenance
from pipeline.training import engine

from .helpers import ROOT
from .helpers.data import synthetic_digits

WRITE_FAILS = """
import resource, signal, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from pipeline import config
from pipeline.common import provenance
from pipeline.training import checkpoints, engine
from tests.helpers.data import synthetic_digits
cfg = config.validate(config.compose({overrides!r}), "tiny")
cache = checkpoints.Cache(Path({folder!r}), 2**30)
saved_in = cache.training(checkpoints.key(cfg, "f" * 64, {{}}))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
net, _ = engine.train(cfg, *synthetic_digits(400), verbose=0, saved_in=saved_in)
print("DIGEST", provenance.weights_digest(net.get_weights()))
"""
TINY = [
    "train.epochs=2",
    "train.batch_size=16",
    "model.hidden_units=16",
    "train.learning_rate=0.01",
    "train.validation_split=0.25",
]


def test_a_write_that_fails_lets_the_training_go_on_without_it(tmp_path, tiny_cfg):
    folder = tmp_path / "checkpoints"
    script = WRITE_FAILS.format(root=str(ROOT), overrides=TINY, folder=str(folder), limit=4096)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checkpoint of epoch 1 not kept" in done.stderr
    assert "training goes on without it" in done.stderr
    assert not list(folder.rglob("0*.json")), "a checkpoint was kept"
    assert not [p for p in folder.rglob(".*") if p.is_file()], "a temporary file was left"
    digest = done.stdout.split("DIGEST ")[1].strip()
    shorter = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, epochs=2))
    net, _ = engine.train(shorter, *synthetic_digits(400), verbose=0)
    assert digest == provenance.weights_digest(net.get_weights())


ON_BACKEND = """
import sys
sys.path.insert(0, {root!r})
import dataclasses, keras
from pathlib import Path
from pipeline import config
from pipeline.common import provenance
from pipeline.training import checkpoints, engine
from tests.helpers.data import synthetic_digits
cfg = config.validate(config.compose({overrides!r}), "tiny")
cache = checkpoints.Cache(Path({folder!r}), 2**30)
saved_in = cache.training(checkpoints.key(cfg, "f" * 64, {{}}))
def trained(epochs, saved_in=None):
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
    net, _ = engine.train(longer, *synthetic_digits(400), verbose=0, saved_in=saved_in)
    return net
trained(2, saved_in)
net = trained(4)
digest = provenance.weights_digest(net.get_weights())
same = digest == provenance.weights_digest(trained(4, saved_in).get_weights())
net.save(Path({folder!r}) / "model.keras")
print(keras.backend.backend(), saved_in.started_from, same, "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_on_each_backend_a_longer_training_goes_on_from_a_shorter_one_bit_for_bit(
    tmp_path, backend
):
    """JAX draws each epoch's data order from NumPy, TensorFlow from its seeded shuffle: the
    checkpoint brings that state back on either."""
    script = ON_BACKEND.format(
        root=str(ROOT), overrides=TINY, folder=str(tmp_path / "checkpoints")
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=os.environ | {"KERAS_BACKEND": backend},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # ... and JAX trains and saves without importing TensorFlow (Keras' set_random_seed and
    # its model serialisation would, for 2 s and 4 s).
    assert done.stdout.split() == [backend, "2", "True", str(backend == "tensorflow")]
