"""The one retry policy: how many tries, which errors earn another, how long it waits, and
what the caller sees when it gives up."""

from __future__ import annotations

import pytest

from pipeline.common import retry


class Flaky:
    """An action that raises each of `errors` in turn, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_a_passing_failure_is_tried_again_with_doubling_waits():
    action, waits, heard = Flaky(OSError("a"), OSError("b")), [], []
    result = retry.call(
        action,
        attempts=4,
        errors=OSError,
        retryable=lambda err: True,
        backoff=0.5,
        sleep=waits.append,
        on_retry=lambda attempt, err, wait: heard.append((attempt, str(err), wait)),
    )
    assert (result, action.calls, waits) == ("done", 3, [0.5, 1.0])
    assert heard == [(1, "a", 0.5), (2, "b", 1.0)]


def test_the_last_error_goes_through_as_it_is_after_every_attempt():
    action, waits = Flaky(*(OSError(n) for n in "abc")), []
    with pytest.raises(OSError, match="^c$"):
        retry.call(
            action, attempts=3, errors=OSError, retryable=lambda err: True, sleep=waits.append
        )
    assert action.calls == 3 and waits == [0.0, 0.0]


def test_an_error_that_cannot_pass_is_not_tried_again():
    action, waits = Flaky(OSError("temporary"), OSError("permanent")), []
    with pytest.raises(OSError, match="permanent"):
        retry.call(
            action,
            attempts=5,
            errors=OSError,
            retryable=lambda err: str(err) == "temporary",
            sleep=waits.append,
        )
    assert action.calls == 2 and waits == [0.0]


def test_errors_outside_the_list_go_through_at_once():
    action = Flaky(KeyError("not a network error"))
    with pytest.raises(KeyError):
        retry.call(action, attempts=3, errors=OSError, retryable=lambda err: True)
    assert action.calls == 1


def test_giving_up_raises_the_callers_error_naming_the_attempts():
    action = Flaky(OSError("a"), OSError("b"))
    with pytest.raises(ValueError, match="gave up after 2: b") as caught:
        retry.call(
            action,
            attempts=2,
            errors=OSError,
            retryable=lambda err: True,
            sleep=lambda wait: None,
            give_up=lambda attempt, err: ValueError(f"gave up after {attempt}: {err}"),
        )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_no_attempt_at_all_is_refused():
    with pytest.raises(ValueError, match="attempts must be >= 1, got 0"):
        retry.call(Flaky(), attempts=0, errors=OSError, retryable=lambda err: True)
