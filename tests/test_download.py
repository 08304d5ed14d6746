"""pipeline/download.py on tiny synthetic MNIST-shaped files, over local paths and real HTTP."""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pipeline import config, download

from .conftest import break_deflate_stream, make_arrays

KEYS = ("x_train", "y_train", "x_test", "y_test")
HTML_ERROR_PAGE = b"<html><body><h1>500 Internal Server Error</h1></body></html>\n"
QUICK = {"timeout": 2.0}  # every network call in this file gives up fast


# ---------------------------------------------------------------- synthetic data


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


def leftover_temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".mnist.npz.*.part"))


@dataclass
class Synthetic:
    path: Path
    arrays: dict[str, np.ndarray]
    sha256: str
    fingerprint: str

    def data(self, url: str | None = None) -> config.DataConfig:
        """By default data.url refuses connections: a test that reaches it fails fast."""
        return config.DataConfig(url=url or closed_port_url(), sha256=self.sha256,
                                 fingerprint=self.fingerprint)


@pytest.fixture
def mnist(tmp_path) -> Synthetic:
    """The 'real' MNIST of these tests: a tiny npz whose digests the DataConfig expects."""
    arrays = make_arrays()
    path = tmp_path / "source" / "mnist.npz"
    path.parent.mkdir()
    np.savez(path, **arrays)
    return Synthetic(path, arrays, sha256_of(path), array_fingerprint(arrays))


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "data" / "raw" / "mnist.npz"


def closed_port_url() -> str:
    """An URL nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist.npz"


# ---------------------------------------------------------------- a scriptable HTTP server


@dataclass
class ScriptedServer:
    """Answers each path with its scripted (status, body) replies in turn; the last repeats."""

    base: str
    replies: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def script(self, path: str, *replies: tuple[int, bytes]) -> str:
        self.replies[path] = list(replies)
        return self.base + path

    def next_reply(self, path: str) -> tuple[int, bytes]:
        self.requests.append(path)
        replies = self.replies.get(path, [(404, b"not found")])
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def hits(self, path: str) -> int:
        return self.requests.count(path)


@pytest.fixture
def server(monkeypatch) -> Iterator[ScriptedServer]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    scripted: ScriptedServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            status, body = scripted.next_reply(self.path)
            self.send_response(status)
            is_html = body.lstrip().startswith(b"<")
            self.send_header("Content-Type",
                             "text/html" if is_html else "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass  # keep pytest's output clean

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scripted = ScriptedServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield scripted
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------- verify()


def test_verify_accepts_the_expected_file_by_sha256(mnist):
    assert download.verify(mnist.path, mnist.sha256, mnist.fingerprint) == "sha256"


def test_verify_accepts_the_same_arrays_in_another_container_by_fingerprint(mnist, tmp_path):
    recompressed = tmp_path / "compressed.npz"
    np.savez_compressed(recompressed, **mnist.arrays)
    assert recompressed.read_bytes() != mnist.path.read_bytes()

    how = download.verify(recompressed, mnist.sha256, mnist.fingerprint)

    assert how == "array fingerprint"


def truncated(good: bytes, arrays) -> bytes:
    return good[:len(good) // 2]


def bit_flipped(good: bytes, arrays) -> bytes:
    """One bit flipped inside x_train's pixels: the zip's CRC no longer matches."""
    pixels_at = good.find(arrays["x_train"].tobytes())
    assert pixels_at > 0, "x_train should be stored uncompressed by np.savez"
    corrupt = bytearray(good)
    corrupt[pixels_at + 100] ^= 0x01
    return bytes(corrupt)


def html_error_page(good: bytes, arrays) -> bytes:
    return HTML_ERROR_PAGE


def different_arrays(good: bytes, arrays) -> bytes:
    other = io.BytesIO()
    np.savez(other, **make_arrays(seed=1))
    return other.getvalue()


@pytest.mark.parametrize("corrupt", [truncated, bit_flipped, html_error_page, different_arrays])
def test_verify_refuses_what_is_not_the_expected_data(mnist, tmp_path, corrupt):
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(corrupt(mnist.path.read_bytes(), mnist.arrays))

    with pytest.raises(download.DownloadError) as excinfo:
        download.verify(bad, mnist.sha256, mnist.fingerprint)

    message = str(excinfo.value)
    assert str(bad) in message
    assert f"sha256 expected {mnist.sha256}, got {sha256_of(bad)}" in message
    assert f"array fingerprint expected {mnist.fingerprint}" in message


def test_verify_reports_an_unreadable_file_as_unreadable(mnist, tmp_path):
    page = tmp_path / "mnist.npz"
    page.write_bytes(HTML_ERROR_PAGE)

    with pytest.raises(download.DownloadError, match=r"got none: not an \.npz \(zip\) file"):
        download.verify(page, mnist.sha256, mnist.fingerprint)


def test_verify_refuses_a_corrupt_compressed_file(mnist, tmp_path):
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, **mnist.arrays)
    break_deflate_stream(compressed)

    with pytest.raises(download.DownloadError, match="unreadable as npz"):
        download.verify(compressed, mnist.sha256, mnist.fingerprint)


# ---------------------------------------------------------------- obtain() from local files


def test_obtain_copies_a_local_source_atomically(mnist, dest):
    origin = download.obtain(dest, mnist.data(), source=str(mnist.path))

    assert origin == str(mnist.path)
    assert dest.read_bytes() == mnist.path.read_bytes()
    assert leftover_temp_files(dest.parent) == []


@pytest.mark.parametrize("source_name, problem", [
    ("other.npz", "not the expected MNIST file"),
    ("missing.npz", "cannot read MNIST_SOURCE="),
])
def test_obtain_refuses_a_bad_local_source_and_leaves_nothing(mnist, dest, tmp_path,
                                                              source_name, problem):
    source = tmp_path / source_name
    if source_name == "other.npz":
        np.savez(source, **make_arrays(seed=1))

    with pytest.raises(download.DownloadError, match=problem) as caught:
        download.obtain(dest, mnist.data(), source=str(source))

    assert str(source) in str(caught.value), "the error must name the bad source"
    assert not dest.exists()
    assert leftover_temp_files(dest.parent) == []


def test_a_missing_file_url_fails_at_once_without_retries(tmp_path, dest):
    waits = []
    with pytest.raises(download.DownloadError, match="missing.npz"):
        download.obtain(dest, config.DataConfig(), source=(tmp_path / "missing.npz").as_uri(),
                        sleep=waits.append)
    assert waits == []


def test_obtain_accepts_a_file_url_source(mnist, dest):
    url = mnist.path.as_uri()
    assert url.startswith("file://")

    origin = download.obtain(dest, mnist.data(), source=url, **QUICK)

    assert origin == url
    assert_same_arrays(dest, mnist.arrays)


# ---------------------------------------------------------------- obtain() and the Keras cache


def test_obtain_reuses_a_verifying_keras_cache_without_touching_the_url(mnist, dest, server):
    url = server.script("/mnist.npz", (500, b"the url must not be used"))

    origin = download.obtain(dest, mnist.data(url), cache=mnist.path, attempts=1, **QUICK)

    assert origin == str(mnist.path)
    assert server.requests == []
    assert dest.read_bytes() == mnist.path.read_bytes()
    assert leftover_temp_files(dest.parent) == []


def test_a_missing_keras_cache_folder_is_never_created_or_replaced(mnist, dest, tmp_path,
                                                                   server):
    cache = tmp_path / "no-keras-home" / "datasets" / "mnist.npz"
    url = server.script("/mnist.npz", (200, mnist.path.read_bytes()))

    origin = download.obtain(dest, mnist.data(url), cache=cache, attempts=1, **QUICK)

    assert origin == url and dest.read_bytes() == mnist.path.read_bytes()
    assert not (tmp_path / "no-keras-home").exists()  # only read, never written


def test_a_read_only_keras_cache_is_read_where_it_is(mnist, dest, tmp_path, server):
    cache = tmp_path / "keras-home" / "datasets" / "mnist.npz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(mnist.path.read_bytes())
    cache.parent.chmod(0o555)
    url = server.script("/mnist.npz", (500, b"the url must not be used"))
    try:
        origin = download.obtain(dest, mnist.data(url), cache=cache, attempts=1, **QUICK)
    finally:
        cache.parent.chmod(0o755)
    assert origin == str(cache) and server.requests == []
    assert sorted(p.name for p in cache.parent.iterdir()) == ["mnist.npz"]


def test_obtain_ignores_a_cache_copy_that_does_not_verify(mnist, dest, tmp_path, server, caplog):
    cache = tmp_path / "keras-home" / "datasets" / "mnist.npz"
    cache.parent.mkdir(parents=True)
    np.savez(cache, **make_arrays(seed=1))
    cache_bytes = cache.read_bytes()
    url = server.script("/mnist.npz", (200, mnist.path.read_bytes()))

    with caplog.at_level(logging.WARNING, logger="pipeline.download"):
        origin = download.obtain(dest, mnist.data(url), cache=cache, attempts=1, **QUICK)

    assert origin == url
    assert server.hits("/mnist.npz") == 1
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


# ---------------------------------------------------------------- fetch() / obtain() over HTTP


def test_obtain_downloads_over_http(mnist, dest, server):
    url = server.script("/mnist.npz", (200, mnist.path.read_bytes()))

    origin = download.obtain(dest, mnist.data(url), attempts=1, **QUICK)

    assert origin == url
    assert server.hits("/mnist.npz") == 1
    assert dest.read_bytes() == mnist.path.read_bytes()
    assert leftover_temp_files(dest.parent) == []


def test_fetch_retries_server_errors_with_exponential_backoff(mnist, tmp_path, server):
    url = server.script("/mnist.npz", (500, b"oops"), (500, b"oops"),
                        (200, mnist.path.read_bytes()))
    waits: list[float] = []
    out = tmp_path / "out.npz"

    download.fetch(url, out, attempts=4, backoff=1, sleep=waits.append, **QUICK)

    assert out.read_bytes() == mnist.path.read_bytes()
    assert server.hits("/mnist.npz") == 3
    assert waits == [1, 2]


def test_fetch_gives_up_after_the_last_attempt(tmp_path, server):
    url = server.script("/mnist.npz", (503, b"busy"))
    waits: list[float] = []

    with pytest.raises(download.DownloadError) as excinfo:
        download.fetch(url, tmp_path / "out.npz", attempts=3, backoff=0.5, sleep=waits.append,
                       **QUICK)

    assert server.hits("/mnist.npz") == 3
    assert waits == [0.5, 1.0]
    message = str(excinfo.value)
    assert url in message
    assert "after 3 attempt(s)" in message
    assert "MNIST_SOURCE" in message


def test_fetch_does_not_retry_a_missing_file(tmp_path, server):
    url = server.script("/mnist.npz", (404, b"no such file"))
    waits: list[float] = []

    with pytest.raises(download.DownloadError, match="404") as excinfo:
        download.fetch(url, tmp_path / "out.npz", attempts=3, sleep=waits.append, **QUICK)

    assert server.hits("/mnist.npz") == 1
    assert waits == []
    assert url in str(excinfo.value)


def test_fetch_retries_a_refused_connection(tmp_path):
    url = closed_port_url()
    waits: list[float] = []

    with pytest.raises(download.DownloadError, match="after 2 attempt"):
        download.fetch(url, tmp_path / "out.npz", attempts=2, backoff=1, sleep=waits.append,
                       **QUICK)

    assert waits == [1]


def test_obtain_refuses_an_html_page_served_with_status_200(mnist, dest, server):
    url = server.script("/mnist.npz", (200, HTML_ERROR_PAGE))

    with pytest.raises(download.DownloadError, match="not the expected MNIST file"):
        download.obtain(dest, mnist.data(url), attempts=1, **QUICK)

    assert server.hits("/mnist.npz") == 1
    assert not dest.exists()
    assert leftover_temp_files(dest.parent) == []


# ---------------------------------------------------------------- main()


def write_params(project: Path, overrides: list[str]) -> None:
    (project / "params.yaml").write_text(config.dump(config.compose(overrides)))


@pytest.fixture
def project(tmp_path, monkeypatch, mnist, server) -> Path:
    """A project folder whose params.yaml expects the synthetic file, with an empty cache.

    data.url points at the scripted server, which answers 404 (not retried) and counts requests.
    """
    folder = tmp_path / "project"
    folder.mkdir()
    url = server.script("/mnist.npz", (404, b"the url must not be used"))
    write_params(folder, [f"data.sha256={mnist.sha256}", f"data.fingerprint={mnist.fingerprint}",
                          f"data.url={url}"])
    monkeypatch.chdir(folder)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    monkeypatch.delenv("MNIST_SOURCE", raising=False)
    return folder


def test_main_takes_the_file_from_mnist_source(project, mnist, server, monkeypatch):
    monkeypatch.setenv("MNIST_SOURCE", str(mnist.path))

    download.main()

    assert_same_arrays(project / "data" / "raw" / "mnist.npz", mnist.arrays)
    assert server.requests == []


def test_main_falls_back_to_the_keras_cache(project, mnist, server, tmp_path,
                                             monkeypatch):
    keras_home = tmp_path / "keras-home-with-mnist"
    (keras_home / "datasets").mkdir(parents=True)
    (keras_home / "datasets" / "mnist.npz").write_bytes(mnist.path.read_bytes())
    monkeypatch.setenv("KERAS_HOME", str(keras_home))

    download.main()

    assert_same_arrays(project / "data" / "raw" / "mnist.npz", mnist.arrays)
    assert server.requests == []
