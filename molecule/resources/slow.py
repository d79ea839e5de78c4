"""Tests too slow for CI's budget beside the rest of their scenario: PLATFORM_TEST_SLOW=1 runs
them, as it runs the slow scenarios (tests/molecule/test_scenarios.py). The README lists each
with its time."""

from __future__ import annotations

import os

import pytest

RUN_SLOW = os.environ.get("PLATFORM_TEST_SLOW") == "1"


def slow(minutes: int, why: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not RUN_SLOW, reason=f"slow ({why}; about {minutes} min in CI): "
                                                   "PLATFORM_TEST_SLOW=1 runs it")
