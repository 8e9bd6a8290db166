"""A transactional test's teardown empties the database with TRUNCATE while a live worker of the session
may still be finishing a task on the same tables. PostgreSQL then sees a deadlock (the worker's
transaction holds a table that TRUNCATE wants and waits for one TRUNCATE holds) and aborts one side; when
it aborts the TRUNCATE, the teardown failed for a race of the test plumbing, not of the code under test.
The flush is tried again then: the worker's transaction has gone on meanwhile."""

import functools
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError
from django.db import OperationalError
from django.test import TransactionTestCase

ATTEMPTS = 5


def _is_deadlock(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OperationalError) or type(exc).__name__ == "DeadlockDetected":
            return "deadlock" in str(exc).lower()
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def retrying_flush(teardown: Callable[[TransactionTestCase], Any]) -> Callable[[TransactionTestCase], Any]:
    @functools.wraps(teardown)
    def wrapper(self: TransactionTestCase) -> Any:
        for _ in range(ATTEMPTS - 1):
            try:
                return teardown(self)
            except (CommandError, OperationalError) as exc:
                if not _is_deadlock(exc):
                    raise
        return teardown(self)  # the last attempt: its error is the test's

    return wrapper


def install() -> None:
    """Make every transactional test's flush retry on a deadlock (once per process)."""
    teardown = TransactionTestCase._fixture_teardown
    if not getattr(teardown, "_retries_deadlocks", False):
        wrapped = retrying_flush(teardown)
        wrapped._retries_deadlocks = True  # type: ignore[attr-defined]
        TransactionTestCase._fixture_teardown = wrapped  # type: ignore[method-assign]
