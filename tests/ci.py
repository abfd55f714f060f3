"""Skips that CI must not take: what `.ci/setup` installs has to be there when CI=true."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def skip_unless_ci(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail under CI=true, where a skip would hide a missing install."""
    if os.environ.get("CI"):
        pytest.fail(f"CI installs what this test needs, yet: {reason}")
    pytest.skip(reason)
