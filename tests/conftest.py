"""Shared pytest configuration."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI explores the same examples on every run (a failure there is reproducible, never a lucky draw);
# local runs keep hypothesis' random exploration to find new cases. No deadline: 2 shared cores.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files (e.g. tests/cdk/errors/*.log) from the current output",
    )
