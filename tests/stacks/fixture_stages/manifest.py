"""Stage builder: one file per host holding the lab's MTU (changes only when the MTU does)."""

from __future__ import annotations

import os
from typing import Any

from cdk.model import Host, Lab
from cdk.stages import common


def build(lab: Lab, host: Host) -> dict[str, Any] | None:
    root = os.environ.get("DISTRILAB_TEST_ROOT", "/nonexistent")
    return {**common(lab, host), "stage": "manifest", "root": root, "files": {"mtu": str(lab.addressing.mtu)}}
