"""Sweep: delete everything that carries one lab's label; the safety net of `destroy`.

Owns nothing of its own: it removes, for lab L,
- LXD instances, profiles and networks whose config has `user.distrilab.lab=L`,
- LXD image aliases named `dl-L-*` (and the image itself once no other alias points at it),
  skipping images whose properties name another lab,
- network interfaces whose ifalias starts with `distrilab:L:`, on every host of the lab.
Nothing without the label is ever touched. The LXD objects are read and deleted through the API
of the lab's first host (in a cluster: every member's); interfaces through each host's shell.
The stack's `sweep` resource (cdk/sweep.py) runs it on destroy, after every stage but before the
cluster stage dissolves the cluster: objects of tainted stage resources (whose destroy
provisioners terraform skips) do not outlive the lab. `apply` changes nothing.

    python -m modules.sweep destroy --spec FILE      (the stack's; see cdk/sweep.py)
    python -m modules.sweep destroy --lab L [--dry-run]   (this machine's LXD only)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cdk.errors import DistrilabError
from cdk.names import alias_prefix, parse_interfaces
from cdk.sweep import HOST_ADDRESSES_ENV
from modules.host_shell import Shell, ShellError, shell_for
from modules.links import list_links
from modules.lxd_rest import LAB_KEY, delete_instance
from modules.reconcile import Action, Reconciler, report_error, workers_fields

LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
LOCAL = {"name": "local", "kind": "local"}

# deletion order: instances hold profiles, networks and images in use
PHASE_INSTANCES, PHASE_LINKS, PHASE_PROFILES, PHASE_NETWORKS, PHASE_IMAGES = range(5)


@dataclass(frozen=True)
class SweepSpec:
    lab: str
    host: str = "*"
    #: the LXD API that holds the lab's objects (the first host's: in a cluster, every member's)
    cluster: dict[str, Any] = field(default_factory=lambda: dict(LOCAL))
    #: every host whose interfaces are swept
    hosts: tuple[dict[str, Any], ...] = (LOCAL,)
    max_workers: int | None = None  # what the lab sets (modules/reconcile.py: resolve_workers)
    #: False for `apply` (the lab's objects are wanted then), True for `destroy`
    sweeping: bool = False


@dataclass(frozen=True)
class Observed:
    instances: dict[str, str] = field(default_factory=dict)  # name -> status
    profiles: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> image fingerprint
    image_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # fingerprint -> all aliases
    host_links: dict[str, tuple[str, ...]] = field(default_factory=dict)  # host -> interface names


@dataclass(frozen=True)
class Connections:
    lxd: Any  # pylxd client
    shells: dict[str, Shell]


def labelled(obj: dict[str, Any], lab: str) -> bool:
    return (obj.get("config") or {}).get(LAB_KEY) == lab


def with_addresses(endpoints: Sequence[dict[str, Any]], environ: dict[str, str]) -> list[dict[str, Any]]:
    """Endpoints with the apply-time addresses (aws instances) the stack passes in the environment."""
    known = json.loads(environ.get(HOST_ADDRESSES_ENV) or "{}")
    return [{**e, "address": known[e["name"]]} if not e.get("address") and e.get("name") in known else dict(e)
            for e in endpoints]


class Sweep(Reconciler[SweepSpec, Observed]):
    name = "sweep"

    def load_spec(self, data: dict[str, Any]) -> SweepSpec:
        lab = data.get("lab")
        if not isinstance(lab, str) or not LAB_NAME.match(lab):
            raise DistrilabError(f"lab: must match {LAB_NAME.pattern} (got {lab!r})")
        hosts = with_addresses(data.get("hosts") or [LOCAL], dict(os.environ))
        cluster = with_addresses([data.get("cluster") or LOCAL], dict(os.environ))[0]
        workers = workers_fields(data)["max_workers"]
        return SweepSpec(lab, str(data.get("host", "*")), cluster, tuple(hosts), workers)

    def empty_spec(self, spec: SweepSpec) -> SweepSpec:
        return dataclasses.replace(spec, sweeping=True)

    def connect(self, spec: SweepSpec) -> Connections | None:
        if not spec.sweeping:
            return None  # apply: nothing to read
        from modules.lxd_client import connect  # imported here: plan() and its tests need no LXD

        return Connections(connect(spec.cluster), {str(h["name"]): shell_for(h) for h in spec.hosts})

    def observe(self, client: Connections | None, spec: SweepSpec) -> Observed:
        if client is None:
            return Observed()

        def listing(endpoint: Any) -> list[dict[str, Any]]:
            # a cluster lists what a member it cannot reach holds as null
            return [item for item in endpoint.get(params={"recursion": 1}).json()["metadata"] if item]

        api = client.lxd.api
        instances = {i["name"]: i["status"] for i in listing(api.instances) if labelled(i, spec.lab)}
        profiles = tuple(sorted(p["name"] for p in listing(api.profiles) if labelled(p, spec.lab)))
        all_networks = listing(api.networks)
        managed = {n["name"] for n in all_networks if n.get("managed")}
        networks = tuple(sorted(n["name"] for n in all_networks
                                if n["name"] in managed and labelled(n, spec.lab)))
        prefix = f"dl-{spec.lab}-"
        aliases: dict[str, str] = {}
        image_aliases: dict[str, tuple[str, ...]] = {}
        for image in listing(api.images):
            names = tuple(a["name"] for a in image.get("aliases") or [])
            image_lab = (image.get("properties") or {}).get("distrilab.lab")
            image_aliases[image["fingerprint"]] = names
            for alias in names:
                if alias.startswith(prefix) and image_lab in (None, spec.lab):
                    aliases[alias] = image["fingerprint"]
        # an LXD-managed bridge may carry the lab's ifalias too: LXD deletes it (and its dnsmasq)
        links = {}
        for host, shell in client.shells.items():
            found = set(parse_interfaces(list_links(shell), alias_prefix(spec.lab))) - managed
            if found:
                links[host] = tuple(sorted(found))
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
            Action("delete", f"link {name}", f"ifalias {alias_prefix(spec.lab)} on {host}", PHASE_LINKS,
                   {"host": host})
            for host, names in sorted(observed.host_links.items())
            for name in names
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

    def execute_action(self, client: Connections | None, spec: SweepSpec, action: Action) -> None:
        assert client is not None, "apply plans nothing"
        kind, name = action.target.split(" ", 1)
        if kind == "instance":
            delete_instance(client.lxd, name, running=action.data.get("status") != "Stopped")
        elif kind == "link":
            shell = client.shells[action.data["host"]]
            done = shell.run(["ip", "link", "del", name], check=False)
            # a veth goes with its peer: the container's end, deleted with the instance just before
            if done.returncode != 0 and "Cannot find device" not in done.stderr:
                raise ShellError(shell.name, f"ip link del {name}", done.returncode, done.stderr)
        elif kind == "profile":
            client.lxd.profiles.get(name).delete()
        elif kind == "network":
            client.lxd.networks.get(name).delete()
        elif kind == "image":
            client.lxd.images.get(action.data["fingerprint"]).delete(wait=True)
        else:
            client.lxd.api.images.aliases[name].delete()

    def main(self, argv: Sequence[str] | None = None) -> int:
        """The stack's `apply|destroy --spec FILE`, or `destroy --lab LAB [--dry-run]` for this
        machine's LXD: exit 0 swept, 1 something could not be deleted, 2 bad usage."""
        args_in = list(sys.argv[1:] if argv is None else argv)
        if "--lab" not in args_in:
            return super().main(args_in)
        parser = argparse.ArgumentParser(prog="python -m modules.sweep")
        parser.add_argument("command", choices=["destroy"])
        parser.add_argument("--lab", required=True)
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--max-workers", type=int, default=None)
        args = parser.parse_args(args_in)
        logging.basicConfig(level=logging.INFO, format=f"[{self.name}] %(message)s")
        try:
            spec = self.load_spec({"lab": args.lab, "max_workers": args.max_workers})
        except DistrilabError as err:
            print(f"[{self.name}] {err}", file=sys.stderr)
            return 2
        try:
            self.converge(self.empty_spec(spec), dry_run=args.dry_run)
        except DistrilabError as err:
            report_error(err)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(Sweep().main())
