"""Shared pieces of the end-to-end tests: unique lab names and what a lab leaves on the host."""

from __future__ import annotations

import secrets
import subprocess
from typing import Any

import pytest

from modules import lxd_rest as rest


@pytest.fixture
def lab_name() -> str:
    """A lab name no other run uses (tests must tolerate leftovers of earlier, killed runs)."""
    return f"e2e{secrets.token_hex(3)}"


def lab_leftovers(lab: str) -> dict[str, Any]:
    """Everything of `lab` still on this host: labelled instances/networks, aliases, host interfaces."""
    client = rest.connect(None)
    instances = sorted(rest.owned_instances(client, lab))
    networks = [n["name"] for n in rest.metadata(client.api.networks.get(params={"recursion": 1}))
                if n.get("config", {}).get(rest.LAB_KEY) == lab]
    aliases = [a["name"] for a in rest.metadata(client.api.images.aliases.get(params={"recursion": 1}))
               if a["name"].startswith(f"dl-{lab}-")]
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    marker = f"alias distrilab:{lab}:"
    interfaces = [line.split(":")[1].strip() for line in out.splitlines() if marker in line]
    return {k: v for k, v in {"instances": instances, "networks": networks, "aliases": aliases,
                              "interfaces": interfaces}.items() if v}
