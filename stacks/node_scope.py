"""What part of a lab one `up` touches: `--limit` (deploy a subset) and `--only` (recreate nodes).

`--only` removes the selected nodes' containers and lets the apply that follows repair them as
drift: the nodes stage recreates exactly those containers, the links stage re-plugs exactly their
links (a container's veth ends go with it; every other link stays up) and the fabric stage
configures exactly those nodes again. So it must start from a lab without other pending changes.
"""

from __future__ import annotations

from typing import Any

from cdk.errors import DistrilabError
from cdk.model import Lab
from cdk.selection import limited, select
from stacks.limits import clear_limit, deployed_part, save_limit
from stacks.paths import Paths


def scope_for_up(lab: Lab, limit: str | None, paths: Paths, only: str | None = None) -> Lab:
    """The part of the whole `lab` this `up` deploys, recorded for the commands after it
    (`--only` alone keeps the part deployed before: it recreates nodes, it deploys nothing new)."""
    if only and not limit:
        return deployed_part(paths, lab)
    if not limit:
        clear_limit(paths, lab.name)  # an `up` without --limit deploys the whole lab
        return lab
    names = select(lab, limit, "--limit")
    save_limit(paths, lab.name, limit, names)
    return limited(lab, names)


def lab_client(lab: Lab) -> Any:
    """The LXD API of the lab's first host: a multi-host lab's hosts form one cluster, whose
    every member lists (and deletes) every instance."""
    from cdk.stages.nodes import endpoint
    from modules.lxd_client import connect

    first = lab.hosts[0]
    return connect(None if first.kind == "local" else endpoint(first, lab.name))


def remove_for_recreation(lab: Lab, only: str) -> tuple[str, ...]:
    """Delete the containers of the nodes `only` selects (those that exist); their names."""
    from modules.lxd_rest import delete_instance, owned_instances

    names = select(lab, only, "--only")
    client = lab_client(lab)
    existing = owned_instances(client, lab.name)
    for name in names:
        instance = lab.instance_name(name)
        if instance in existing:
            delete_instance(client, instance, running=existing[instance].get("status") == "Running")
    return names


def refuse_pending_changes(changes: list[tuple[str, str, str]]) -> None:
    """`--only` recreates nodes and nothing else: a lab file changed since the last `up` first
    needs a plain `up` (changes: stage, host, action)."""
    if changes:
        listed = ", ".join(f"{stage}@{host} ({action})" for stage, host, action in changes)
        raise DistrilabError(f"--only: the lab has changes besides the nodes to recreate: {listed}\n"
                             "  hint: run 'distrilab up' first (or 'distrilab plan' to see them)")
