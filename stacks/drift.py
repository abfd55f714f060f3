"""Drift: what changed on the hosts behind terraform's back, found before `up` and `plan`.

Terraform only re-runs a stage's provisioner when the stage's desired state (its hash) changes.
A container deleted by hand, a bridge removed, a switch restarted: none of that changes a hash,
so on its own `terraform apply` would say "no changes" over a broken lab. This is the refresh
step terraform does for real providers: for every stage already in the state whose desired state
is unchanged, the stage's reconciler observes the hosts and plans (reads only); a stage with
pending actions is applied with `-replace`, so its reconciler runs again and repairs only that.
Stages checked are the cheap, read-only-observable ones; Alcor and the controller are not
(observing them means health probes and API calls), a changed spec still re-runs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdk.errors import DistrilabError
from modules.reconcile import Action, reconciler_for

#: stages whose observe() is cheap and read-only, in apply order (cluster: a host whose LXD daemon
#: stopped, e.g. after a reboot, or lost its cgroup mounts, is set up again before its nodes)
REFRESHED_STAGES = ("cluster", "images", "nodes", "links", "fabric")


@dataclass(frozen=True)
class Drift:
    address: str  # terraform_data.nodes_local
    stage: str
    host: str
    actions: tuple[Action, ...]

    @property
    def summary(self) -> str:
        shown = "; ".join(str(a) for a in self.actions[:3])
        more = f"; and {len(self.actions) - 3} more" if len(self.actions) > 3 else ""
        return f"{len(self.actions)} action(s): {shown}{more}"


def applied_hashes(state_file: Path | Mapping[str, Any]) -> dict[str, str]:
    """terraform address -> the spec hash it was applied with, read from the local state file (or
    a state pulled from a shared backend)."""
    if isinstance(state_file, Path):
        if not state_file.exists():
            return {}
        state: Mapping[str, Any] = json.loads(state_file.read_text() or "{}")
    else:
        state = state_file
    hashes: dict[str, str] = {}
    for resource in state.get("resources", []):
        if resource.get("type") != "terraform_data" or resource.get("mode") != "managed":
            continue
        for instance in resource.get("instances", []):
            value = (instance.get("attributes") or {}).get("input") or {}
            value = value.get("value", value) if isinstance(value, dict) else {}
            if isinstance(value, dict) and "hash" in value:
                hashes[f"terraform_data.{resource['name']}"] = str(value["hash"])
    return hashes


def find_drift(
    specs: Iterable[tuple[str, str, str, str, str, dict[str, Any]]],
    state_file: Path | Mapping[str, Any],
    observe_plan: Callable[[str, dict[str, Any]], list[Action]] | None = None,
) -> list[Drift]:
    """Stages in the state, unchanged in desired state, whose hosts no longer match it.

    `specs` gives (address, stage, module, host, hash, spec) per stage resource; `observe_plan`
    (module, spec) -> actions defaults to the stage's real reconciler (reads only).
    """
    observe_plan = observe_plan or _observe_plan
    applied = applied_hashes(state_file)
    drifts: list[Drift] = []
    for address, stage, module, host, digest, spec in specs:
        if stage not in REFRESHED_STAGES or applied.get(address) != digest:
            continue  # not applied yet, or changed: terraform replaces it anyway
        try:
            actions = observe_plan(module, spec)
        except DistrilabError as err:
            if not drifts:
                raise  # nothing runs before it that could fix this (LXD unreachable, a foreign network)
            # an earlier stage re-runs first and may repair what this one misses (a deleted image
            # alias stops the nodes plan): re-run this one after it, it reports for itself if not
            earlier = drifts[-1]
            reason = f"cannot plan before {earlier.stage}@{earlier.host} re-runs: {str(err).splitlines()[0]}"
            actions = [Action("observe", f"{stage}@{host}", reason)]
        except Exception as err:  # an unreachable host is drift too: the stage must run and say why
            actions = [Action("observe", f"{stage}@{host}", f"cannot observe: {err}")]
        if actions:
            drifts.append(Drift(address, stage, host, tuple(actions)))
    return drifts


def _observe_plan(module: str, spec: dict[str, Any]) -> list[Action]:
    reconciler = reconciler_for(module)
    loaded = reconciler.load_spec(spec)
    client = reconciler.connect(loaded)
    return reconciler.plan(loaded, reconciler.observe(client, loaded))
