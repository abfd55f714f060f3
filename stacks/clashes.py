"""Before `up` creates anything: does the lab collide with another lab on this machine? (VXLAN
ids and the lab's name; the rules are cdk/clashes.py's.) Reads this machine only: a remote host's
tunnels are its own cluster stage's business."""

from __future__ import annotations

import json
from typing import Any

from cdk.clashes import name_clash, vni_clashes
from cdk.errors import DistrilabError
from cdk.names import lab_of_alias, parse_interfaces


def taken_vnis(links: list[dict[str, Any]]) -> dict[int, str]:
    """VXLAN id -> lab of every distrilab tunnel in `ip -j -d link` output."""
    return {int(entry["vxlan"]["id"]): lab_of_alias(entry["alias"]) or "?"
            for entry in parse_interfaces(links, "distrilab:").values()
            if entry.get("vxlan") and entry["vxlan"].get("id") is not None}


def require_no_clash(synthesized: Any) -> None:  # stacks.deploy.Synthesized
    from modules.links import list_links
    from modules.lxd_client import LxdUnreachableError, connect
    from modules.lxd_rest import LAB_KEY, metadata, owned_instances

    lab = synthesized.lab
    local = [h for h in lab.hosts if h.kind == "local"]
    if not local:
        return
    problems = [line for h in local for line in vni_clashes(lab, h.name, taken_vnis(list_links()))]
    try:
        client = connect(None, timeout=10)
    except LxdUnreachableError:
        client = None  # no daemon yet (the cluster stage starts it): no lab runs here
    if client is None:
        _raise(lab.name, problems)
        return
    networks = [n for n in metadata(client.api.networks.get(params={"recursion": 1})) or []
                if (n.get("config") or {}).get(LAB_KEY) == lab.name]
    objects = len(owned_instances(client, lab.name)) + len(networks)
    if objects and (why := name_clash(lab.name, objects, resources_in_state(synthesized))):
        problems.append(why)
    _raise(lab.name, problems)


def _raise(lab: str, problems: list[str]) -> None:
    if problems:
        raise DistrilabError(
            f"lab {lab} would collide with another lab on this machine:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\n  hint: rename the lab (its VXLAN ids and container names follow its name), or bring it "
              "down where it was brought up")


def resources_in_state(synthesized: Any) -> int:
    """How many resources the lab's state holds (its backend's, shared or local)."""
    from stacks import deploy

    if synthesized.lab.state.backend == "local":
        path = synthesized.state_file
        state = json.loads(path.read_text() or "{}") if path.exists() else {}
    else:
        state = deploy.terraform(synthesized).state_pull()
    return len(state.get("resources") or [])
