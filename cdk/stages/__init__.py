"""The apply-time stages of a lab, in dependency order, and the desired state each one gets.

Each stage `X` has a builder `cdk/stages/X.py: build(lab, host) -> dict | None` (pure; None means
the stage has nothing to do on that host) and a reconciler `python -m modules.<module>`.
Every spec dict carries `lab`, `host`, `max_workers` and `workers_limit`; the rest is the stage's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdk.model import Host, Lab


@dataclass(frozen=True)
class Stage:
    name: str  # resource and spec file name part: "nodes"
    module: str  # python -m <module> apply|destroy --spec FILE
    builder: str  # "cdk.stages.nodes"

    def build(self, lab: Lab, host: Host) -> dict[str, Any] | None:
        fn: Callable[[Lab, Host], dict[str, Any] | None] = importlib.import_module(self.builder).build
        return fn(lab, host)


#: hosts -> cluster -> images -> nodes -> links -> fabric -> alcor -> controller
STAGES: tuple[Stage, ...] = (
    Stage("cluster", "modules.lxd_host", "cdk.stages.cluster"),
    Stage("images", "modules.images", "cdk.stages.images"),
    Stage("nodes", "modules.nodes", "cdk.stages.nodes"),
    Stage("links", "modules.links", "cdk.stages.links"),
    Stage("fabric", "modules.fabric", "cdk.stages.fabric"),
    Stage("alcor", "modules.alcor", "cdk.stages.alcor"),
    Stage("controller", "modules.controller", "cdk.stages.controller"),
)


def common(lab: Lab, host: Host) -> dict[str, Any]:
    """The header every stage spec starts with."""
    return {"lab": lab.name, "host": host.name, "max_workers": lab.lxd.max_workers,
            "workers_limit": host.max_workers}
