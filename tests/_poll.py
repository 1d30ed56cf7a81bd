"""Bounded polling for tests of live servers: a condition, a deadline, a step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(fn: Callable[[], Any], timeout: float = 20.0, step: float = 0.1) -> Any:
    """``fn()``'s first truthy value, polled every ``step`` s; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)
