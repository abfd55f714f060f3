"""Stage builder like `markers`, but its reconciler is told to fail on the first node."""

from __future__ import annotations

from typing import Any

from cdk.model import Host, Lab
from tests.stacks.fixture_stages import markers


def build(lab: Lab, host: Host) -> dict[str, Any] | None:
    spec = markers.build(lab, host)
    if spec is not None:
        spec["files"]["FAIL_ON"] = sorted(spec["files"])[0]
    return spec
