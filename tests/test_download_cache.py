"""pipeline/download.py choosing its source: MNIST_SOURCE, then the user's Keras cache (only
ever read), then data.url; through obtain() and the stage's main(). On tiny synthetic files
(the `mnist` fixture) and a local scripted HTTP server (`http_server`) that counts requests.

verify(), fetch() and obtain() over HTTP: test_download.py."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline import config, download

from .helpers.data import assert_same_arrays, leftover_temp_files, make_arrays

QUICK = {"timeout": 2.0}  # every network call in this file gives up fast


# ---------------------------------------------------------------- obtain() and the Keras cache


def test_obtain_reuses_a_verifying_keras_cache_without_touching_the_url(mnist, dest, http_server):
    url = http_server.script("/mnist.npz", (500, b"the url must not be used"))

    origin = download.obtain(dest, mnist.data(url), cache=mnist.path, attempts=1, **QUICK)

    assert origin == str(mnist.path)
    assert http_server.requests == []
    assert dest.read_bytes() == mnist.path.read_bytes()
    assert leftover_temp_files(dest.parent) == []


def test_a_missing_keras_cache_folder_is_never_created_or_replaced(
    mnist, dest, tmp_path, http_server
):
    cache = tmp_path / "no-keras-home" / "datasets" / "mnist.npz"
    url = http_server.script("/mnist.npz", (200, mnist.path.read_bytes()))

    origin = download.obtain(dest, mnist.data(url), cache=cache, attempts=1, **QUICK)

    assert origin == url and dest.read_bytes() == mnist.path.read_bytes()
    assert not (tmp_path / "no-keras-home").exists()  # only read, never written


def test_a_read_only_keras_cache_is_read_where_it_is(mnist, dest, tmp_path, http_server):
    cache = tmp_path / "keras-home" / "datasets" / "mnist.npz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(mnist.path.read_bytes())
    cache.parent.chmod(0o555)
    url = http_server.script("/mnist.npz", (500, b"the url must not be used"))
    try:
        origin = download.obtain(dest, mnist.data(url), cache=cache, attempts=1, **QUICK)
    finally:
        cache.parent.chmod(0o755)
    assert origin == str(cache) and http_server.requests == []
    assert sorted(p.name for p in cache.parent.iterdir()) == ["mnist.npz"]


def test_obtain_ignores_a_cache_copy_that_does_not_verify(
    mnist, dest, tmp_path, http_server, caplog
):
    cache = tmp_path / "keras-home" / "datasets" / "mnist.npz"
    cache.parent.mkdir(parents=True)
    np.savez(cache, **make_arrays(seed=1))
    cache_bytes = cache.read_bytes()
    url = http_server.script("/mnist.npz", (200, mnist.path.read_bytes()))

    with caplog.at_level(logging.WARNING, logger="pipeline.download"):
        origin = download.obtain(dest, mnist.data(url), cache=cache, attempts=1, **QUICK)

    assert origin == url
    assert http_server.hits("/mnist.npz") == 1
    assert_same_arrays(dest, mnist.arrays)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ignoring the Keras cache copy" in w and str(cache) in w for w in warnings)
    assert cache.read_bytes() == cache_bytes, "the user's Keras cache must not be touched"


def test_obtain_prefers_an_explicit_source_over_the_cache(mnist, dest, tmp_path):
    cache = tmp_path / "cache.npz"
    np.savez_compressed(cache, **mnist.arrays)  # verifies too, but by fingerprint

    origin = download.obtain(dest, mnist.data(), source=str(mnist.path), cache=cache)

    assert origin == str(mnist.path)
    assert dest.read_bytes() == mnist.path.read_bytes()


def test_keras_cache_honours_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))

    assert download.keras_cache() == tmp_path / "kh" / "datasets" / "mnist.npz"


def test_keras_cache_defaults_to_dot_keras_in_home(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    assert download.keras_cache() == tmp_path / ".keras" / "datasets" / "mnist.npz"


# ---------------------------------------------------------------- main()


def write_params(project: Path, overrides: list[str]) -> None:
    (project / "params.yaml").write_text(config.dump(config.compose(overrides)))


@pytest.fixture
def project(tmp_path, monkeypatch, mnist, http_server) -> Path:
    """A project folder whose params.yaml expects the synthetic file, with an empty cache.

    data.url points at the scripted server, which answers 404 (not retried) and counts requests.
    """
    folder = tmp_path / "project"
    folder.mkdir()
    url = http_server.script("/mnist.npz", (404, b"the url must not be used"))
    write_params(
        folder,
        [
            f"data.sha256={mnist.sha256}",
            f"data.fingerprint={mnist.fingerprint}",
            f"data.url={url}",
        ],
    )
    monkeypatch.chdir(folder)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    monkeypatch.delenv("MNIST_SOURCE", raising=False)
    return folder


def test_main_takes_the_file_from_mnist_source(project, mnist, http_server, monkeypatch):
    monkeypatch.setenv("MNIST_SOURCE", str(mnist.path))

    download.main([])

    assert_same_arrays(project / "data" / "raw" / "mnist.npz", mnist.arrays)
    assert http_server.requests == []


def test_main_falls_back_to_the_keras_cache(project, mnist, http_server, tmp_path, monkeypatch):
    keras_home = tmp_path / "keras-home-with-mnist"
    (keras_home / "datasets").mkdir(parents=True)
    (keras_home / "datasets" / "mnist.npz").write_bytes(mnist.path.read_bytes())
    monkeypatch.setenv("KERAS_HOME", str(keras_home))

    download.main([])

    assert_same_arrays(project / "data" / "raw" / "mnist.npz", mnist.arrays)
    assert http_server.requests == []
