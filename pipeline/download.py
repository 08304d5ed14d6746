"""Stage 1: obtain mnist.npz and prove it is MNIST before anything uses it.

Where the file comes from, first match wins:
1. `MNIST_SOURCE` (a local path, or a file:// or http(s) URL of a mirror), if set;
2. the Keras cache (`$KERAS_HOME/datasets/mnist.npz`, `~/.keras` by default), if it verifies;
3. `data.url`, the canonical Keras URL, with bounded retries.

A file is accepted if its sha256 matches `data.sha256`, or if its arrays match
`data.fingerprint` (same MNIST in another zip container); anything else is deleted and refused.
The file is written under a temporary name and renamed, so an interrupted run leaves nothing.
No TensorFlow or MLflow here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from pipeline import PipelineError, config
from pipeline.common import entry, files, retry
from pipeline.common.mnist import fingerprint

log = logging.getLogger(__name__)

SOURCE_ENV = "MNIST_SOURCE"
ATTEMPTS = 4
BACKOFF_S = 1.0  # waits 1, 2, 4 s between the attempts
TIMEOUT_S = 30.0  # per connect / read
CHUNK = 1 << 20


class DownloadError(PipelineError):
    """The data could not be obtained, or what was obtained is not MNIST."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: Path) -> str:
    """The array fingerprint of an .npz file; never unpickles."""
    with np.load(path, allow_pickle=False) as npz:
        return fingerprint(npz)


def verify(path: Path, sha256: str, expected_fingerprint: str, name: str | None = None) -> str:
    """Return how `path` proved to be the expected data; raise DownloadError if it is not.

    `name` is what the error calls the file (where it came from), `path` by default.
    """
    actual = sha256_file(path)
    if actual == sha256:
        return "sha256"
    if not zipfile.is_zipfile(path):
        content = "none: not an .npz (zip) file"
    else:
        try:
            content = file_fingerprint(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, zlib.error) as err:
            content = f"none: unreadable as npz ({type(err).__name__}: {err})"
    if content == expected_fingerprint:
        return "array fingerprint"
    raise DownloadError(
        f"{name or path} is not the expected MNIST file: sha256 expected {sha256}, got "
        f"{actual}; array fingerprint expected {expected_fingerprint}, got {content}"
    )


def _retryable(err: Exception) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code in (408, 429)
    return isinstance(err, (urllib.error.URLError, TimeoutError, ConnectionError))


def _stream(url: str, dest: Path, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done, next_report = 0, 0.1
        while block := response.read(CHUNK):
            out.write(block)
            done += len(block)
            if total and done / total >= next_report:
                log.info("downloaded %d%% of %.1f MB", 100 * done // total, total / 1e6)
                next_report += 0.1


def fetch(
    url: str,
    dest: Path,
    *,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF_S,
    timeout: float = TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Download `url` into `dest`, retrying network errors and 5xx with exponential backoff."""

    def warn(attempt: int, err: Exception, wait: float) -> None:
        log.warning(
            "attempt %d/%d for %s failed (%s); retrying in %.0f s",
            attempt,
            attempts,
            url,
            err,
            wait,
        )

    def failed(attempt: int, err: Exception) -> DownloadError:
        return DownloadError(
            f"could not download {url} after {attempt} attempt(s): {err}. Offline? "
            f"Point {SOURCE_ENV} at a local copy of mnist.npz"
        )

    retry.call(
        lambda: _stream(url, dest, timeout),
        attempts=attempts,
        errors=(urllib.error.URLError, OSError),
        retryable=_retryable,
        backoff=backoff,
        sleep=sleep,
        on_retry=warn,
        give_up=failed,
    )


def copy_from(source: str, dest: Path, **fetch_kwargs) -> None:
    """Fetch an http(s) URL, or copy a local path or file:// URL, into `dest`."""
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        fetch(source, dest, **fetch_kwargs)
        return
    path = url2pathname(parsed.path) if parsed.scheme == "file" else source
    try:
        shutil.copyfile(Path(path).expanduser(), dest)
    except OSError as err:
        raise DownloadError(f"cannot read {SOURCE_ENV}={source}: {err.strerror}") from None


def keras_cache() -> Path:
    """Where Keras' own `mnist.load_data()` keeps the file."""
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "datasets" / "mnist.npz"


def obtain(
    dest: Path,
    data: config.DataConfig,
    *,
    source: str | None = None,
    cache: Path | None = None,
    **fetch_kwargs,
) -> str:
    """Put verified MNIST at `dest` atomically; return where it came from."""
    if not source and cache is not None and cache.is_file():
        try:
            how = verify(cache, data.sha256, data.fingerprint)
        except DownloadError as err:
            log.warning("ignoring the Keras cache copy: %s", err)
        else:
            source = str(cache)
            log.info("using the Keras cache copy %s (verified by %s)", cache, how)
    origin = source or data.url
    with files.replacing(dest, suffix=".part") as tmp:
        log.info("fetching %s", origin)
        copy_from(origin, tmp, **fetch_kwargs)
        how = verify(tmp, data.sha256, data.fingerprint, name=origin)
    log.info("%s verified by %s", dest, how)
    return origin


def main(argv: list[str] | None = None) -> None:
    entry.parser("pipeline.download", __doc__).parse_args(argv)
    cfg = config.load()
    obtain(
        Path(cfg.paths.raw),
        cfg.data,
        source=os.environ.get(SOURCE_ENV) or None,
        cache=keras_cache(),
    )


if __name__ == "__main__":
    entry.run(main)
