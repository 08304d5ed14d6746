"""The one retry policy: try an action again when it fails in a way that can pass (a download
cut off, a write that lost a race with a parallel job), a bounded number of times, waiting
longer before each try."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=Exception)


def call(
    action: Callable[[], T],
    *,
    attempts: int,
    errors: type[E] | tuple[type[E], ...],
    retryable: Callable[[E], bool],
    backoff: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, E, float], None] | None = None,
    give_up: Callable[[int, E], Exception] | None = None,
) -> T:
    """What `action()` returns, trying it `attempts` times in all while it raises one of
    `errors` that `retryable` accepts; other errors go through at once.

    Before try N+1 it waits `backoff * 2**(N-1)` s (1, 2, 4... times `backoff`), after
    telling `on_retry(N, error, wait)`. The error that ends it is raised as it is, or as the
    error `give_up(N, error)` makes of it.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts} (pass attempts=1 for no retry)")
    attempt = 1
    while True:
        try:
            return action()
        except errors as err:
            if attempt == attempts or not retryable(err):
                if give_up is None:
                    raise
                raise give_up(attempt, err) from None
            wait = backoff * 2 ** (attempt - 1)
            if on_retry is not None:
                on_retry(attempt, err, wait)
            sleep(wait)
            attempt += 1
