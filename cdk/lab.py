"""Lab files: the YAML format and its validation.

The first two stages of the design-time pipeline (cdk/pipeline.py):

- load (cdk/lab_source.py): read the file, parse YAML, and remember the line of every key and
  list item so that each problem can point at its line (`LabSource`, `Problems`);
- validate (here): check the JSON schema (cdk/lab_schema.py (draft 2020-12; the `topology` part comes from the
  generator's own SCHEMA for the chosen kind)), then the checks a schema cannot express
  (duplicate host names, existing image recipes, pool syntax, placement file), and fill in
  defaults (`LabSpec`).

A lab file (every section but `name` is optional):

    name: demo                      # [a-z][a-z0-9-]*, at most 20 characters
    description: free text
    hosts: [{name: local, kind: local}]                # local | ssh | aws (+ max_workers: a cap)
    topology: {kind: leaf-spine, spines: 2, leaves: 2, servers_per_leaf: 3}
    addressing: {management: 10.210.0.0/16, loopbacks: 10.211.0.0/16,
                 p2p: 10.212.0.0/16, servers: 10.213.0.0/16, mtu: 1500}
    images: {server: server, switch: switch}          # role or kind -> images/recipes/<name>.yaml
    fabric: {mode: l2, bridge: ovs}                    # l2 (bridge: ovs | linux) | l3 (BGP, FRR)
    images_options: {mirror: ..., aca_source: ...}
    resources: {defaults: {cpu: 1, memory: 256MiB}, spine: {memory: 512MiB}}
    placement: {strategy: partition}                   # round-robin | partition | file (+ file:)
    lxd: {storage: auto, storage_size: 20GiB, max_workers: 8, privileged: false,
          pool: distrilab}                            # pool: created with storage_size if missing;
                                                       # max_workers: default this machine's vCPUs
    state: {backend: local, lock_timeout: 60s}        # local | pg (pg: {schema_name}) | s3 (s3: {bucket})
    alcor: null                                        # null | default | {...}
    controller: null                                   # null | {...}

Nothing here writes anything; it reads the recipes directory and the placement file's existence
only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from cdk.aws import check_aws_hosts
from cdk.errors import DistrilabError
from cdk.lab_schema import DEFAULT_POOLS, POOL_NAMES, lab_schema, schema_problems
from cdk.lab_source import AttrPath, LabSource, Problems, did_you_mean
from cdk.model import SWITCH_ROLES, FabricSettings, Host, Limits, LxdSettings, StateBackend
from cdk.topology import GENERATORS  # each kind's parameter schema is part of the lab schema

#: the image recipes shipped with distrilab (images/recipes/<name>.yaml)
RECIPES_DIR = Path(__file__).resolve().parent.parent / "images" / "recipes"

DEFAULT_HOSTS: tuple[dict[str, Any], ...] = ({"name": "local", "kind": "local"},)
DEFAULT_MTU = 1500
DEFAULT_IMAGES: dict[str, str] = {"server": "server", "switch": "switch"}
#: the switch image of a routed fabric, and the package it must install
ROUTER_IMAGE, FRR_PACKAGE = "router", "frr"
DEFAULT_PLACEMENT = "partition"

@dataclass(frozen=True)
class LabSpec:
    """A validated lab file with defaults filled in: the input of expand/address/place."""

    name: str
    description: str
    hosts: tuple[Host, ...]
    topology_kind: str
    topology_params: dict[str, Any]  # as written, without `kind` (each generator applies its DEFAULTS)
    pools: dict[str, str]  # management/loopbacks/p2p/servers -> network
    mtu: int
    images: dict[str, str]  # role or kind -> recipe name
    image_options: dict[str, Any]
    image_packages: dict[str, frozenset[str]]  # recipe -> what it installs (recipe_packages)
    limits: dict[str, Limits]  # "defaults" and role/kind -> limits as written
    placement_strategy: str
    placement_file: Path | None
    lxd: LxdSettings
    alcor: dict[str, Any] | None
    controller: dict[str, Any] | None
    fabric: FabricSettings = field(default_factory=FabricSettings)
    state: StateBackend = field(default_factory=StateBackend)
    #: the pools the lab file sets; the others are the lab's to choose (cdk/pipeline.py: address)
    pools_given: frozenset[str] = frozenset()


def validate(source: LabSource, recipes_dir: Path | None = None) -> LabSpec:
    """The validate stage: schema, then semantic checks; raises LabFileError with all problems."""
    data: dict[str, Any] = source.data
    problems = Problems(source)
    topology = data.get("topology")
    kind = topology.get("kind") if isinstance(topology, dict) else None
    generator = GENERATORS.get(kind) if isinstance(kind, str) else None
    schema = lab_schema(generator.SCHEMA if generator else None, GENERATORS)
    failed: list[AttrPath] = []
    errors = sorted(
        Draft202012Validator(schema).iter_errors(data),
        key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator)),
    )
    for error in errors:
        for path, message, value, hint in schema_problems(error):
            failed.append(path)
            problems.add(path, message, value, hint)

    def valid(*prefix: str | int) -> bool:
        """No schema error at or below `prefix`: its semantic checks can trust the types."""
        return not any(path[: len(prefix)] == prefix for path in failed)

    hosts = _check_hosts(data, problems) if valid("hosts") else ()
    pools = _check_pools(data, problems) if valid("addressing") else dict(DEFAULT_POOLS)
    if valid("hosts"):
        for path, message, value, hint in check_aws_hosts(data.get("hosts", []), pools):
            problems.add(path, message, value, hint)
    fabric = FabricSettings(**data.get("fabric", {})) if valid("fabric") else FabricSettings()
    state = _check_state(data, problems) if valid("state") else StateBackend()
    if fabric.mode == "l3" and "bridge" in data.get("fabric", {}):
        problems.add(("fabric", "bridge"), "applies to the l2 fabric only", fabric.bridge,
                     "a routed fabric (mode: l3) bridges nothing but each rack's servers: remove it")
    images = {**default_images(fabric), **data.get("images", {})} if valid("images") else {}
    _check_recipes(images, recipes_dir or RECIPES_DIR, problems)
    packages = recipe_packages(images.values(), recipes_dir or RECIPES_DIR) if valid("images") else {}
    if fabric.mode == "l3":
        _check_routers(images, packages, problems)
    placement_file = _check_placement(data, source, problems) if valid("placement") else None
    problems.raise_if_any()  # every check above passed, so the types below are as the schema says

    params = {k: v for k, v in topology.items() if k != "kind"}
    lxd = {**data.get("lxd", {})}
    placement = data.get("placement", {})
    alcor = data.get("alcor")
    return LabSpec(
        name=data["name"],
        description=data.get("description", ""),
        hosts=hosts,
        topology_kind=kind,
        topology_params=params,
        pools=pools,
        pools_given=frozenset(set(data.get("addressing", {})) & set(POOL_NAMES)),
        mtu=data.get("addressing", {}).get("mtu", DEFAULT_MTU),
        images=dict(sorted(images.items())),
        image_options=dict(data.get("images_options", {})),
        image_packages=packages,
        limits={
            role: Limits(
                cpu=None if limits.get("cpu") is None else str(limits["cpu"]), memory=limits.get("memory")
            )
            for role, limits in sorted(data.get("resources", {}).items())
        },
        placement_strategy=placement.get("strategy", DEFAULT_PLACEMENT),
        placement_file=placement_file,
        lxd=LxdSettings(**lxd),
        alcor={} if alcor == "default" else alcor,  # "default": Alcor with every setting at its default
        controller=data.get("controller"),
        fabric=fabric,
        state=state,
    )


_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def is_host_address(text: str) -> bool:
    """An IPv4/IPv6 address, or a DNS host name (RFC 1123 labels; the last not all digits, so
    `999.1.1.1` is neither a name nor an address)."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    return (len(text) <= 253 and all(_HOST_LABEL.match(label) for label in labels)
            and not labels[-1].isdigit())


def _check_hosts(data: dict[str, Any], problems: Problems) -> tuple[Host, ...]:
    source_dir = problems.source.directory
    entries = data.get("hosts", list(DEFAULT_HOSTS))
    first_seen: dict[str, int] = {}
    local = [i for i, h in enumerate(entries) if h.get("kind", "local") == "local"]
    for index, entry in enumerate(entries):
        name = entry["name"]
        if name in first_seen:
            problems.add(
                ("hosts", index, "name"),
                f"duplicate host name (also hosts[{first_seen[name]}])",
                name,
                "every host needs its own name",
            )
        first_seen.setdefault(name, index)
        kind = entry.get("kind", "local")
        if kind == "ssh" and "address" not in entry:
            problems.add(
                ("hosts", index, "address"), "is required for an ssh host", hint="the host's IP address"
            )
        if "address" in entry and not is_host_address(entry["address"]):
            problems.add(("hosts", index, "address"), "must be an IP address or a host name",
                         entry["address"], "e.g. 192.168.1.20 or node1.lab.example")
        if kind != "ssh":
            for key in ("ssh_key", "host_key"):
                if key in entry:
                    problems.add(("hosts", index, key), "only applies to hosts of kind ssh",
                                 hint=f"kind is {kind!r}")
        key_file = entry.get("ssh_key")
        if kind == "ssh" and key_file and not (source_dir / key_file).expanduser().is_file():
            problems.add(("hosts", index, "ssh_key"), "no such file", key_file,
                         "a private key file (relative paths start at the lab file's folder)")
        if kind == "aws":
            for key in ("region", "instance_type"):
                if key not in entry.get("aws", {}):
                    problems.add(("hosts", index, "aws", key), "is required for an aws host")
        elif "aws" in entry:
            problems.add(
                ("hosts", index, "aws"), "only applies to hosts of kind aws", hint=f"kind is {kind!r}"
            )
    for index in local[1:]:
        problems.add(
            ("hosts", index, "kind"),
            f"only one host can be local (hosts[{local[0]}] is)",
            "local",
            "describe other machines as kind ssh or aws",
        )
    return tuple(
        Host(
            name=e["name"],
            kind=e.get("kind", "local"),
            address=e.get("address"),
            capacity=e.get("capacity", Host.capacity),
            ssh_user=e.get("ssh_user"),
            ssh_key=str((source_dir / e["ssh_key"]).expanduser().resolve()) if e.get("ssh_key") else None,
            host_key=e.get("host_key"),
            underlay=e.get("underlay"),
            max_workers=e.get("max_workers"),
            capacity_given="capacity" in e,
            aws=dict(sorted(e.get("aws", {}).items())),
        )
        for e in entries
    )


def _check_state(data: dict[str, Any], problems: Problems) -> StateBackend:
    """The backend's own section goes with it: `pg:` for pg, `s3:` (with a bucket) for s3."""
    section = data.get("state", {})
    backend = section.get("backend", "local")
    for other in ("pg", "s3"):
        if other in section and other != backend:
            problems.add(("state", other), f"applies to state.backend {other} only", section[other],
                         f"set state.backend: {other}, or remove state.{other}")
    if backend == "s3" and "s3" not in section:
        problems.add(("state", "s3"), "is required for state.backend s3", None,
                     "s3: {bucket: my-bucket, region: eu-west-1}")
    return StateBackend(backend=backend, lock_timeout=section.get("lock_timeout", "60s"),
                        settings=dict(section.get(backend, {})) if backend != "local" else {})


def _check_pools(data: dict[str, Any], problems: Problems) -> dict[str, str]:
    pools = {**DEFAULT_POOLS, **{k: v for k, v in data.get("addressing", {}).items() if k in POOL_NAMES}}
    for pool, text in pools.items():
        path = ("addressing", pool)
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            problems.add(path, "must be an IPv4 network in CIDR form", text, "e.g. 10.210.0.0/16")
            continue
        if network.version != 4:
            problems.add(path, "must be an IPv4 network", text, "the fabric is IPv4 only")
        elif str(network) != text:
            problems.add(path, "has host bits set", text, f"use {network}")
    return pools


def default_images(fabric: FabricSettings) -> dict[str, str]:
    """Switches of a routed fabric run FRR (`router`); Linux-bridge switches need no Open vSwitch:
    the server image has iproute2's bridge tools."""
    if fabric.mode == "l3":
        return {**DEFAULT_IMAGES, "switch": ROUTER_IMAGE}
    return {**DEFAULT_IMAGES, "switch": "server"} if fabric.bridge == "linux" else DEFAULT_IMAGES


def recipe_packages(recipes: Iterable[str], recipes_dir: Path = RECIPES_DIR) -> dict[str, frozenset[str]]:
    """Every package each recipe installs, its parents' included: read once while the lab loads,
    so that no stage builder reads a recipe file. A missing or broken recipe is left out (the
    recipe check names the first; building the second reports what is wrong)."""
    from images.recipe import RecipeBook  # reads recipe files only

    book, found = RecipeBook((recipes_dir,)), {}
    for recipe in sorted(set(recipes)):
        if not (recipes_dir / f"{recipe}.yaml").is_file():
            continue
        try:
            found[recipe] = frozenset(p for layer in book.chain(recipe).layers for p in layer.packages)
        except DistrilabError:
            continue
    return found


def _check_routers(images: dict[str, str], packages: dict[str, frozenset[str]], problems: Problems) -> None:
    """In a routed fabric every switch image must install FRR (the `router` recipe does)."""
    for role, recipe in sorted(images.items()):
        if role not in SWITCH_ROLES or recipe not in packages:
            continue
        if FRR_PACKAGE not in packages[recipe]:
            problems.add(("images", role), f"image '{recipe}' has no {FRR_PACKAGE}: switches of a routed "
                         "fabric run BGP", recipe, f"use images.{role}: {ROUTER_IMAGE} (or a recipe that "
                         f"extends it), or fabric.mode: l2")


def _check_recipes(images: dict[str, str], recipes_dir: Path, problems: Problems) -> None:
    available = sorted(p.stem for p in recipes_dir.glob("*.yaml")) if recipes_dir.is_dir() else []
    for role, recipe in sorted(images.items()):
        if not (recipes_dir / f"{recipe}.yaml").is_file():
            problems.add(
                ("images", role),
                f"no image recipe named '{recipe}' (expected images/recipes/{recipe}.yaml)",
                hint=did_you_mean(recipe, available) or "add the recipe file or name an existing one",
            )


def _check_placement(data: dict[str, Any], source: LabSource, problems: Problems) -> Path | None:
    placement = data.get("placement", {})
    strategy = placement.get("strategy", DEFAULT_PLACEMENT)
    file = placement.get("file")
    if strategy == "file" and file is None:
        problems.add(
            ("placement", "file"),
            "is required when strategy is 'file'",
            hint="a YAML mapping of node name -> host name",
        )
    if file is None:
        return None
    if strategy != "file":
        problems.add(
            ("placement", "file"),
            f"is only used with strategy 'file' (strategy is '{strategy}')",
            file,
            "set strategy: file, or remove 'file'",
        )
        return None
    path = source.directory / file
    if not path.is_file():
        problems.add(("placement", "file"), "placement file not found", file, f"looked for {path}")
    return path
