"""A job's key (`pipeline.config.jobs`): what a job done once is found by. It changes with
everything that changes a job's numbers (params, data, code, environment) and with nothing
else, and it is computed without loading Keras, before a sweep decides whether to train."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest

from pipeline import config, preprocess
from pipeline.common import provenance, sources
from pipeline.config import jobs

from .helpers import ROOT
from .helpers.data import write_prepared

FACTS = {"python": "3.12.0", "keras_backend": "jax", "omp_num_threads": "default"}


@pytest.fixture(autouse=True)
def fresh_code_digest():
    """`jobs.code` is read once a process: no test sees another's (monkeypatched) digest."""
    code = jobs.code  # torn down before monkeypatch puts it back
    code.cache_clear()
    yield
    code.cache_clear()


def _key(cfg: config.Config, fingerprint: str = "synthetic", facts=FACTS) -> str:
    return jobs.key(cfg, fingerprint, facts)


def _train(cfg: config.Config, **changes) -> config.Config:
    return replace(cfg, train=replace(cfg.train, **changes))


def test_the_key_is_a_sha256_and_the_same_for_the_same_job(tiny_cfg):
    key = _key(tiny_cfg)
    assert re.fullmatch("[0-9a-f]{64}", key), key
    assert _key(config.validate(config.to_dict(tiny_cfg), "the same config")) == key


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda cfg: _train(cfg, seed=cfg.train.seed + 1), id="train.seed"),
        pytest.param(lambda cfg: _train(cfg, epochs=cfg.train.epochs + 1), id="train.epochs"),
        pytest.param(
            lambda cfg: _train(
                cfg,
                early_stopping=replace(
                    cfg.train.early_stopping, enabled=not cfg.train.early_stopping.enabled
                ),
            ),
            id="train.early_stopping.enabled",
        ),
        pytest.param(lambda cfg: _train(cfg, batch_size=32), id="train.batch_size"),
        pytest.param(
            lambda cfg: replace(cfg, model=replace(cfg.model, hidden_units=17)),
            id="model.hidden_units",
        ),
        pytest.param(
            lambda cfg: replace(cfg, data=replace(cfg.data, fingerprint="f" * 64)),
            id="data.fingerprint",
        ),
    ],
)
def test_a_changed_param_is_another_job(tiny_cfg, change):
    assert _key(change(tiny_cfg)) != _key(tiny_cfg)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda cfg: replace(cfg, paths=replace(cfg.paths, prepared="/elsewhere/prepared")),
            id="paths.prepared",
        ),
        pytest.param(
            lambda cfg: replace(cfg, paths=replace(cfg.paths, model="/elsewhere/model.keras")),
            id="paths.model",
        ),
        pytest.param(
            lambda cfg: replace(cfg, tracking=replace(cfg.tracking, experiment="other")),
            id="tracking.experiment",
        ),
        pytest.param(
            lambda cfg: replace(cfg, tracking=replace(cfg.tracking, registered_model="other")),
            id="tracking.registered_model",
        ),
        pytest.param(
            lambda cfg: replace(
                cfg,
                checkpoints=replace(
                    cfg.checkpoints, enabled=not cfg.checkpoints.enabled, dir="/elsewhere"
                ),
            ),
            id="checkpoints",
        ),
        pytest.param(lambda cfg: replace(cfg, reuse=not cfg.reuse), id="reuse"),
        pytest.param(lambda cfg: replace(cfg, replicates=3), id="replicates"),
    ],
)
def test_what_does_not_change_the_numbers_is_the_same_job(tiny_cfg, change):
    assert _key(change(tiny_cfg)) == _key(tiny_cfg)


def test_other_data_is_another_job(tiny_cfg):
    assert _key(tiny_cfg, fingerprint="other") != _key(tiny_cfg)


@pytest.mark.parametrize(
    "changed",
    [
        {"omp_num_threads": "1"},
        {"keras_backend": "tensorflow"},
        {"python": "3.13.0"},
        {"cpu_isa": "avx2"},  # a fact the key had not seen before
    ],
)
def test_another_environment_is_another_job(tiny_cfg, changed):
    assert _key(tiny_cfg, facts=FACTS | changed) != _key(tiny_cfg)


def test_other_code_is_another_job(tiny_cfg, monkeypatch):
    before = _key(tiny_cfg)
    monkeypatch.setattr(jobs, "code", lambda: "0" * 64)
    assert _key(tiny_cfg) != before


def test_the_code_is_the_closure_of_train_and_evaluate_read_once(tiny_cfg, monkeypatch):
    assert jobs.code() == sources.digest("pipeline.train", "pipeline.evaluate")
    before = _key(tiny_cfg)
    jobs.code.cache_clear()
    monkeypatch.setattr(sources, "digest", lambda *modules: "edited " + " ".join(modules))
    edited = _key(tiny_cfg)
    assert edited != before
    monkeypatch.undo()  # the digest changes on disk again: this process keeps what it read
    assert _key(tiny_cfg) == edited


def test_of_keys_a_config_on_its_prepared_arrays_here(tiny_cfg, tmp_path):
    prepared = write_prepared(tmp_path / "prepared")
    cfg = replace(tiny_cfg, paths=replace(tiny_cfg.paths, prepared=str(prepared)))
    key = jobs.key_for(cfg)
    assert key == jobs.key(cfg, "synthetic", provenance.environment())
    meta = json.loads((prepared / preprocess.META).read_text())
    (prepared / preprocess.META).write_text(json.dumps(meta | {"fingerprint": "other"}))
    assert jobs.key_for(cfg) != key


def test_the_environment_changes_with_a_backend_variable(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = provenance.environment()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert provenance.environment() == before | {"omp_num_threads": "1"}
    assert before["omp_num_threads"] == "default"


@pytest.mark.parametrize(
    "code",
    [
        "import sys, pipeline.common.provenance as p; p.environment(); "
        "print('keras' in sys.modules)",
        "import sys; from pipeline import config; from pipeline.config import jobs; "
        "cfg = config.validate(config.compose(['paths.prepared=' + sys.argv[1]]), 'conf/'); "
        "jobs.key_for(cfg); print('keras' in sys.modules)",
    ],
    ids=["provenance.environment", "jobs.key_for"],
)
def test_keying_a_job_does_not_load_keras(tmp_path, code):
    prepared = write_prepared(tmp_path / "prepared")
    done = subprocess.run(
        [sys.executable, "-c", code, str(prepared)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
