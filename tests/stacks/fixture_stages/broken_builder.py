"""A stage builder whose own import fails: stage_specs must raise, not skip it."""

from __future__ import annotations

import no_such_dependency  # noqa: F401
