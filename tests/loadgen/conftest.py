from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.doubles.alcor_api import AlcorApiDouble


@pytest.fixture
def alcor() -> Iterator[AlcorApiDouble]:
    with AlcorApiDouble() as double:
        yield double
