"""pipeline/download.py on tiny synthetic MNIST-shaped files: verify(), and obtain() and
fetch() over local paths and real HTTP (a local scripted server: the `http_server` fixture).

Which source obtain() and main() pick, the Keras cache among them: test_download_cache.py."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pipeline import config, download

from .helpers.data import (
    assert_same_arrays,
    break_deflate_stream,
    leftover_temp_files,
    make_arrays,
    sha256_of,
)
from .helpers.http import HTML_ERROR_PAGE, closed_port_url

QUICK = {"timeout": 2.0}  # every network call in this file gives up fast


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
    return good[: len(good) // 2]


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


@pytest.mark.parametrize(
    "source_name, problem",
    [("other.npz", "not the expected MNIST file"), ("missing.npz", "cannot read MNIST_SOURCE=")],
)
def test_obtain_refuses_a_bad_local_source_and_leaves_nothing(
    mnist, dest, tmp_path, source_name, problem
):
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
        download.obtain(
            dest,
            config.from_conf().data,
            source=(tmp_path / "missing.npz").as_uri(),
            sleep=waits.append,
        )
    assert waits == []


def test_obtain_accepts_a_file_url_source(mnist, dest):
    url = mnist.path.as_uri()
    assert url.startswith("file://")

    origin = download.obtain(dest, mnist.data(), source=url, **QUICK)

    assert origin == url
    assert_same_arrays(dest, mnist.arrays)


# ---------------------------------------------------------------- fetch() / obtain() over HTTP


def test_obtain_downloads_over_http(mnist, dest, http_server):
    url = http_server.script("/mnist.npz", (200, mnist.path.read_bytes()))

    origin = download.obtain(dest, mnist.data(url), attempts=1, **QUICK)

    assert origin == url
    assert http_server.hits("/mnist.npz") == 1
    assert dest.read_bytes() == mnist.path.read_bytes()
    assert leftover_temp_files(dest.parent) == []


def test_fetch_retries_server_errors_with_exponential_backoff(mnist, tmp_path, http_server):
    url = http_server.script(
        "/mnist.npz", (500, b"oops"), (500, b"oops"), (200, mnist.path.read_bytes())
    )
    waits: list[float] = []
    out = tmp_path / "out.npz"

    download.fetch(url, out, attempts=4, backoff=1, sleep=waits.append, **QUICK)

    assert out.read_bytes() == mnist.path.read_bytes()
    assert http_server.hits("/mnist.npz") == 3
    assert waits == [1, 2]


def test_fetch_gives_up_after_the_last_attempt(tmp_path, http_server):
    url = http_server.script("/mnist.npz", (503, b"busy"))
    waits: list[float] = []

    with pytest.raises(download.DownloadError) as excinfo:
        download.fetch(
            url, tmp_path / "out.npz", attempts=3, backoff=0.5, sleep=waits.append, **QUICK
        )

    assert http_server.hits("/mnist.npz") == 3
    assert waits == [0.5, 1.0]
    message = str(excinfo.value)
    assert url in message
    assert "after 3 attempt(s)" in message
    assert "MNIST_SOURCE" in message


def test_fetch_does_not_retry_a_missing_file(tmp_path, http_server):
    url = http_server.script("/mnist.npz", (404, b"no such file"))
    waits: list[float] = []

    with pytest.raises(download.DownloadError, match="404") as excinfo:
        download.fetch(url, tmp_path / "out.npz", attempts=3, sleep=waits.append, **QUICK)

    assert http_server.hits("/mnist.npz") == 1
    assert waits == []
    assert url in str(excinfo.value)


def test_fetch_retries_a_refused_connection(tmp_path):
    url = closed_port_url()
    waits: list[float] = []

    with pytest.raises(download.DownloadError, match="after 2 attempt"):
        download.fetch(
            url, tmp_path / "out.npz", attempts=2, backoff=1, sleep=waits.append, **QUICK
        )

    assert waits == [1]


def test_obtain_refuses_an_html_page_served_with_status_200(mnist, dest, http_server):
    url = http_server.script("/mnist.npz", (200, HTML_ERROR_PAGE))

    with pytest.raises(download.DownloadError, match="not the expected MNIST file"):
        download.obtain(dest, mnist.data(url), attempts=1, **QUICK)

    assert http_server.hits("/mnist.npz") == 1
    assert not dest.exists()
    assert leftover_temp_files(dest.parent) == []
