"""Stage builder: one marker file per node placed on the host (None when the host has none)."""

from __future__ import annotations

import os
from typing import Any

from cdk.model import Host, Lab
from cdk.stages import common


def build(lab: Lab, host: Host) -> dict[str, Any] | None:
    nodes = [n.name for n in lab.nodes_on(host.name)]
    if not nodes:
        return None
    root = os.environ.get("DISTRILAB_TEST_ROOT", "/nonexistent")
    return {**common(lab, host), "stage": "markers", "root": root, "files": {n: "node" for n in nodes}}
