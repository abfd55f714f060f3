"""How a lab names and marks what it owns: one place for every name and ownership label (pure).

Every object a lab creates carries the lab's name: LXD objects the config key LAB_KEY, host
network interfaces an ifalias `distrilab:<lab>:<what>`, image aliases and descriptions the same
prefix. `destroy`, the sweep (modules/sweep.py), drift detection and the host-route check
(cdk/host_routes.py) recognise the lab's objects by these and nothing else. Names derived from
hashes (of the lab, of a link id) fit the kernel's 15 characters and stay put when the lab grows.
"""

from __future__ import annotations

import hashlib
from typing import Any

#: LXD config key on every instance, profile and network a lab creates
LAB_KEY = "user.distrilab.lab"
#: LXD config key naming the stage that owns an object
OWNER_KEY = "user.distrilab.owner"
_ALIAS_PREFIX = "distrilab:"


#: Linux interface names are at most 15 characters
_IFNAME_MAX = 15


def short_hash(text: str, length: int) -> str:
    """A deterministic hex digest prefix, for names that must fit kernel/LXD length limits."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def management_network(lab: str) -> str:
    """The LXD-managed bridge of a lab's management network: `dlm-<lab>`, hashed when too long."""
    name = f"dlm-{lab}"
    return name if len(name) <= _IFNAME_MAX else f"dlm-{short_hash(lab, 10)}"


def image_alias(lab: str, recipe: str) -> str:
    """The per-lab image alias the images stage creates for a recipe."""
    return f"dl-{lab}-{recipe}"


def template_name(lab: str, recipe: str) -> str:
    """The stopped, already id-shifted container every node of one image is copied from.

    The double hyphen keeps it apart from node containers (`dl-<lab>-<node>`; node names never
    start with a hyphen).
    """
    return f"dl-{lab}--tpl-{recipe}"


def lab_tag(lab: str) -> str:
    return short_hash(lab, 4)


def link_tag(lab: str, link_id: str) -> str:
    return short_hash(f"{lab}/{link_id}", 8)


def vni(lab: str, link_id: str) -> int:
    """The VXLAN id of a cross-host link: the same on both hosts, 1..2^24-1."""
    return int(short_hash(f"vni/{lab}/{link_id}", 6), 16) % 0xFFFFFE + 1


def alias_prefix(lab: str) -> str:
    """Every host interface of the lab carries an ifalias starting with this."""
    return f"{_ALIAS_PREFIX}{lab}:"


def interface_alias(lab: str, what: str) -> str:
    """The ifalias (or LXD description) of one of the lab's objects: `distrilab:<lab>:<what>`."""
    return f"{alias_prefix(lab)}{what}"


def lab_of_alias(alias: str) -> str | None:
    """The lab an ifalias names (`distrilab:<lab>:...`), or None for anything else."""
    if not alias.startswith(_ALIAS_PREFIX) or alias.count(":") < 2:
        return None
    return alias.split(":")[1]


def lab_of_interface(item: dict[str, Any]) -> str | None:
    """The lab one interface of `ip -j -d link` output belongs to (by its ifalias), or None."""
    return lab_of_alias(item.get("ifalias") or "")


def parse_interfaces(links: list[dict[str, Any]], prefix: str) -> dict[str, dict[str, Any]]:
    """Pure: `ip -j -d link show` output -> {name: {kind, alias, mtu, master, up, group, vxlan?}}
    for the interfaces whose ifalias starts with `prefix`. The one parser of that output."""
    result: dict[str, dict[str, Any]] = {}
    for item in links:
        alias = item.get("ifalias") or ""
        if not alias.startswith(prefix):
            continue
        info = item.get("linkinfo") or {}
        kind = info.get("info_kind", "")
        entry: dict[str, Any] = {
            "kind": kind,
            "alias": alias,
            "mtu": item.get("mtu"),
            "master": item.get("master"),
            "up": "UP" in (item.get("flags") or []),
            "group": group_of(item),
        }
        if kind == "vxlan":
            data = info.get("info_data") or {}
            entry["vxlan"] = {"id": data.get("id"), "remote": data.get("remote"), "local": data.get("local"),
                              "port": data.get("port")}
        result[item["ifname"]] = entry
    return result


def group_of(item: dict[str, Any]) -> str:
    """An interface's device group as a number (`ip -j` names group 0 `default`)."""
    group = str(item.get("group", "default"))
    return "0" if group == "default" else group
