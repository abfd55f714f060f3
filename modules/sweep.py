"""Sweep: delete everything that carries one lab's label; the safety net of `destroy`.

Owns nothing of its own: it removes, for lab L,
- LXD instances, profiles and networks whose config has `user.distrilab.lab=L`,
- LXD image aliases named `dl-L-*` (and the image itself once no other alias points at it),
  skipping images whose properties name another lab,
- host network interfaces whose ifalias starts with `distrilab:L:` (this host only).
Nothing without the label is ever touched. The stack's anchor resource runs it last on
destroy, so objects of tainted stage resources (whose destroy provisioners terraform skips)
do not outlive the lab. A clean destroy leaves no `user.distrilab.lab=L` object behind.

    python -m modules.sweep destroy --lab L [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cdk.errors import DistrilabError
from modules.lxd_rest import delete_instance
from modules.reconcile import Action, Reconciler, report_error

LAB_KEY = "user.distrilab.lab"
LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")

# deletion order: instances hold profiles, networks and images in use
PHASE_INSTANCES, PHASE_LINKS, PHASE_PROFILES, PHASE_NETWORKS, PHASE_IMAGES = range(5)


@dataclass(frozen=True)
class SweepSpec:
    lab: str
    host: str = "local"
    max_workers: int = 8


@dataclass(frozen=True)
class Observed:
    instances: dict[str, str] = field(default_factory=dict)  # name -> status
    profiles: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> image fingerprint
    image_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # fingerprint -> all aliases
    host_links: tuple[str, ...] = ()  # interface names


def labelled(obj: dict[str, Any], lab: str) -> bool:
    return (obj.get("config") or {}).get(LAB_KEY) == lab


def host_links(lab: str) -> tuple[str, ...]:
    """Interfaces of this host whose ifalias marks them as the lab's."""
    proc = subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True, text=True, check=True)
    prefix = f"distrilab:{lab}:"
    return tuple(
        sorted(i["ifname"] for i in json.loads(proc.stdout) if (i.get("ifalias") or "").startswith(prefix))
    )


class Sweep(Reconciler[SweepSpec, Observed]):
    name = "sweep"

    def load_spec(self, data: dict[str, Any]) -> SweepSpec:
        lab = data.get("lab")
        if not isinstance(lab, str) or not LAB_NAME.match(lab):
            raise DistrilabError(f"lab: must match {LAB_NAME.pattern} (got {lab!r})")
        return SweepSpec(lab, str(data.get("host", "local")), int(data.get("max_workers", 8)))

    def empty_spec(self, spec: SweepSpec) -> SweepSpec:
        return spec

    def connect(self, spec: SweepSpec) -> Any:
        from modules.lxd_client import connect  # imported here: plan() and its tests need no LXD

        return connect(None)

    def observe(self, client: Any, spec: SweepSpec) -> Observed:
        def listing(endpoint: Any) -> list[dict[str, Any]]:
            return list(endpoint.get(params={"recursion": 1}).json()["metadata"])

        instances = {i["name"]: i["status"] for i in listing(client.api.instances) if labelled(i, spec.lab)}
        profiles = tuple(sorted(p["name"] for p in listing(client.api.profiles) if labelled(p, spec.lab)))
        networks = tuple(
            sorted(
                n["name"] for n in listing(client.api.networks) if n.get("managed") and labelled(n, spec.lab)
            )
        )
        prefix = f"dl-{spec.lab}-"
        aliases: dict[str, str] = {}
        image_aliases: dict[str, tuple[str, ...]] = {}
        for image in listing(client.api.images):
            names = tuple(a["name"] for a in image.get("aliases") or [])
            image_lab = (image.get("properties") or {}).get("distrilab.lab")
            image_aliases[image["fingerprint"]] = names
            for alias in names:
                if alias.startswith(prefix) and image_lab in (None, spec.lab):
                    aliases[alias] = image["fingerprint"]
        # an LXD-managed bridge may carry the lab's ifalias too: LXD deletes it (and its dnsmasq)
        managed = {n["name"] for n in listing(client.api.networks) if n.get("managed")}
        links = tuple(name for name in host_links(spec.lab) if name not in managed)
        return Observed(instances, profiles, networks, aliases, image_aliases, links)

    def plan(self, spec: SweepSpec, observed: Observed) -> list[Action]:
        actions = [
            Action(
                "delete",
                f"instance {name}",
                f"labelled {spec.lab} ({status})",
                PHASE_INSTANCES,
                {"status": status},
            )
            for name, status in sorted(observed.instances.items())
        ]
        actions += [
            Action("delete", f"link {name}", f"ifalias distrilab:{spec.lab}:", PHASE_LINKS)
            for name in observed.host_links
        ]
        actions += [
            Action("delete", f"profile {p}", f"labelled {spec.lab}", PHASE_PROFILES)
            for p in observed.profiles
        ]
        actions += [
            Action("delete", f"network {n}", f"labelled {spec.lab}", PHASE_NETWORKS)
            for n in observed.networks
        ]
        by_image: dict[str, list[str]] = {}
        for alias, fingerprint in sorted(observed.aliases.items()):
            by_image.setdefault(fingerprint, []).append(alias)
        reason = f"alias prefix dl-{spec.lab}-"
        for fingerprint, mine in sorted(by_image.items()):
            if set(observed.image_aliases.get(fingerprint, ())) <= set(mine):
                # the image goes with its last alias
                actions.append(
                    Action(
                        "delete",
                        f"image {fingerprint[:12]} ({', '.join(mine)})",
                        reason,
                        PHASE_IMAGES,
                        {"fingerprint": fingerprint},
                    )
                )
            else:  # other aliases still point at it: only ours go
                actions += [Action("delete", f"alias {a}", reason, PHASE_IMAGES) for a in mine]
        return actions

    def execute_action(self, client: Any, spec: SweepSpec, action: Action) -> None:
        kind, name = action.target.split(" ", 1)
        if kind == "instance":
            delete_instance(client, name, running=action.data.get("status") != "Stopped")
        elif kind == "link":
            subprocess.run(["ip", "link", "del", name], capture_output=True, text=True, check=True)
        elif kind == "profile":
            client.profiles.get(name).delete()
        elif kind == "network":
            client.networks.get(name).delete()
        elif kind == "image":
            client.images.get(action.data["fingerprint"]).delete(wait=True)
        else:
            client.api.images.aliases[name].delete()

    def main(self, argv: Sequence[str] | None = None) -> int:
        """`destroy --lab LAB [--dry-run]`: exit 0 swept, 1 something could not be deleted, 2 bad usage."""
        parser = argparse.ArgumentParser(prog="python -m modules.sweep")
        parser.add_argument("command", choices=["destroy"])
        parser.add_argument("--lab", required=True)
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--max-workers", type=int, default=8)
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO, format=f"[{self.name}] %(message)s")
        try:
            spec = self.load_spec({"lab": args.lab, "max_workers": args.max_workers})
        except DistrilabError as err:
            print(f"[{self.name}] {err}", file=sys.stderr)
            return 2
        try:
            self.converge(spec, dry_run=args.dry_run)
        except DistrilabError as err:
            report_error(err)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(Sweep().main())
