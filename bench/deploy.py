"""Run a lab's host stages (images, nodes, links, fabric) in-process, the way terraform runs them.

For the benchmark and the end-to-end tests: the same reconcilers and specs as `distrilab up`,
without terraform and one interpreter per stage, timed per stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from cdk.model import Lab
from cdk.stages import STAGES
from modules.reconcile import Reconciler, reconciler_for

#: the stages that make a lab's network real on its hosts, in apply order
NETWORK_STAGES = ("images", "nodes", "links", "fabric")


def reconciler_of(stage: str) -> Reconciler[Any, Any]:
    return reconciler_for(next(s.module for s in STAGES if s.name == stage))


def apply(lab: Lab, stages: Iterable[str] = NETWORK_STAGES) -> dict[str, dict[str, float]]:
    """Converge every stage on every host; returns {stage: {"seconds", "actions"}} (raises on failure)."""
    result = {}
    for stage in stages:
        spent, count = 0.0, 0
        for host in lab.hosts:
            spec_data = next(s for s in STAGES if s.name == stage).build(lab, host)
            if spec_data is None:
                continue
            r = reconciler_of(stage)
            started = time.monotonic()
            count += r.converge(r.load_spec(spec_data))
            spent += time.monotonic() - started
        result[stage] = {"seconds": spent, "actions": count}
    return result


def destroy(lab: Lab, stages: Iterable[str] = NETWORK_STAGES) -> dict[str, dict[str, float]]:
    """Destroy the stages in reverse order on every host; same result shape as apply."""
    result = {}
    for stage in reversed(list(stages)):
        spent, count = 0.0, 0
        for host in lab.hosts:
            spec_data = next(s for s in STAGES if s.name == stage).build(lab, host)
            if spec_data is None:
                continue
            r = reconciler_of(stage)
            started = time.monotonic()
            count += r.converge(r.empty_spec(r.load_spec(spec_data)))
            spent += time.monotonic() - started
        result[stage] = {"seconds": spent, "actions": count}
    return result
