"""Lab files: the YAML format, its JSON schema, loading with line numbers, and validation.

The first two stages of the design-time pipeline (cdk/pipeline.py) live here:

- load: read the file, parse YAML, and remember the line of every key and list item so that
  each problem can point at its line (`LabSource`);
- validate: check the JSON schema (draft 2020-12; the `topology` part comes from the
  generator's own SCHEMA for the chosen kind), then the checks a schema cannot express
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

Nothing here writes anything; it reads the lab file, the recipes directory and the placement file's
existence only.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError

from cdk.aws import check_aws_hosts
from cdk.errors import DistrilabError, LabFileError, Problem
from cdk.model import SERVER_ROLES, SWITCH_ROLES, FabricSettings, Host, Limits, LxdSettings, StateBackend
from cdk.topology import GENERATORS  # each kind's parameter schema is part of the lab schema

#: the image recipes shipped with distrilab (images/recipes/<name>.yaml)
RECIPES_DIR = Path(__file__).resolve().parent.parent / "images" / "recipes"

NAME_MAX = 20
DEFAULT_HOSTS: tuple[dict[str, Any], ...] = ({"name": "local", "kind": "local"},)
DEFAULT_POOLS: dict[str, str] = {
    "management": "10.210.0.0/16",
    "loopbacks": "10.211.0.0/16",
    "p2p": "10.212.0.0/16",
    "servers": "10.213.0.0/16",
}
POOL_NAMES = tuple(DEFAULT_POOLS)
DEFAULT_MTU = 1500
DEFAULT_IMAGES: dict[str, str] = {"server": "server", "switch": "switch"}
#: the switch image of a routed fabric, and the package it must install
ROUTER_IMAGE, FRR_PACKAGE = "router", "frr"
DEFAULT_PLACEMENT = "partition"
PLACEMENT_STRATEGIES = ("round-robin", "partition", "file")
#: keys of `images` and `resources`: a node role, or a node kind (switch/server)
ROLE_KEYS = tuple(dict.fromkeys((*SWITCH_ROLES, *SERVER_ROLES, "switch", "server")))

# An attribute path inside the lab document: ("hosts", 1, "capacity") is `hosts[1].capacity`.
AttrPath = tuple[str | int, ...]


def format_path(path: Iterable[str | int]) -> str:
    """`("hosts", 1, "capacity")` -> `hosts[1].capacity`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest valid choice, if one is close enough."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


# ---------------------------------------------------------------- load stage


@dataclass(frozen=True)
class LabSource:
    """A parsed lab document plus the line of each attribute path (empty for Python labs)."""

    file: str
    data: Any
    directory: Path  # relative paths in the lab (the placement file) are resolved from here
    lines: Mapping[AttrPath, int] = field(default_factory=dict)

    def line(self, path: AttrPath) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one (a missing key's parent)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def problem(self, path: AttrPath, message: str, value: object = None, hint: str | None = None) -> Problem:
        return Problem(self.file, format_path(path) or "(lab)", message, value, self.line(path), hint)


class Problems:
    """Collects the problems of one stage; `raise_if_any` ends the stage."""

    def __init__(self, source: LabSource):
        self.source = source
        self.items: list[Problem] = []

    def add(self, path: AttrPath, message: str, value: object = None, hint: str | None = None) -> None:
        self.items.append(self.source.problem(path, message, value, hint))

    def raise_if_any(self) -> None:
        if self.items:
            # by line, then in the order found: reads top to bottom like the file
            ordered = sorted(self.items, key=lambda p: p.line or 0)
            unique: dict[str, Problem] = {}
            for problem in ordered:
                unique.setdefault(str(problem), problem)  # e.g. a name both too long and malformed
            raise LabFileError(list(unique.values()))


def read_lab_file(path: str | Path) -> LabSource:
    """The load stage: the file must exist and be one YAML mapping without duplicate keys."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabFileError(
            [Problem(file, "(file)", "lab file not found", hint="check the path; example labs are in labs/")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabFileError([Problem(file, "(file)", f"cannot read the lab file: {exc}")]) from None
    if too_deep := _first_line_too_deep(text):
        raise LabFileError([Problem(
            file, "(yaml)", f"nested more than {MAX_DEPTH} levels deep", line=too_deep,
            hint="a lab file needs a few levels: check brackets and indentation",
        )])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (control characters)
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise LabFileError([Problem(
            file, "(yaml)", f"character U+{code:04X} is not allowed in YAML (not printable)", line=line,
            hint="remove it; text that needs it can spell it as an escape inside double quotes",
        )]) from None
    except RecursionError:  # nested deeper than the parser can follow, in block style
        raise LabFileError([Problem(file, "(yaml)", "nested too deeply to read",
                                    hint="a lab file needs a few levels: check the indentation")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem}" + (f" ({exc.context})" if exc.context else "")
        line = mark.line + 1 if mark else None
        raise LabFileError(
            [Problem(file, "(yaml)", message, line=line, hint="check indentation, colons and quotes")]
        ) from None
    lines: dict[AttrPath, int] = {}
    source = LabSource(file, data, Path(path).parent, lines)
    problems = Problems(source)
    if node is not None:
        _index_lines(node, (), lines, problems)
    if data is None:
        problems.add((), "the lab file is empty", hint="start from labs/default.yaml")
    elif not isinstance(data, dict):
        problems.add((), "must be a mapping of lab settings", type(data).__name__)
    problems.raise_if_any()
    return source


#: deeper than any lab file needs; YAML's parser recurses per level and gives up near 1000
MAX_DEPTH = 64


def _first_line_too_deep(text: str) -> int | None:
    """The line where flow brackets ([ and {) open more than MAX_DEPTH levels, if any; quoted
    text and comments are skipped."""
    depth, quote, line = 0, "", 1
    for index, char in enumerate(text):
        if char == "\n":
            line += 1
            if quote != '"':
                quote = ""  # a single-quoted or plain scalar does not span lines in flow context here
            continue
        if quote:
            if char == quote and not (quote == '"' and text[index - 1] == "\\"):
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1] in " \t"):
            quote = "#"  # a comment: to the end of the line
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif char in "]}":
            depth = max(0, depth - 1)
    return _first_line_indented_too_deep(text)


def _first_line_indented_too_deep(text: str) -> int | None:
    """The line where block style (indentation) opens more than MAX_DEPTH levels, if any."""
    indents: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw) - len(stripped)
        while indents and indents[-1] >= indent:
            indents.pop()
        indents.append(indent)
        if len(indents) > MAX_DEPTH:
            return number
    return None


def source_from_dict(data: Mapping[str, Any], source: str = "<python>") -> LabSource:
    """The load stage of a lab written in Python: no file, no lines."""
    if not isinstance(data, Mapping):
        raise LabFileError(
            [Problem(source, "(lab)", "must be a mapping of lab settings", type(data).__name__)]
        )
    return LabSource(source, dict(data), Path.cwd(), {})


def _index_lines(node: yaml.Node, path: AttrPath, lines: dict[AttrPath, int], problems: Problems) -> None:
    """Record the line of each key and list item; report keys given twice (YAML keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            sub = (*path, key)
            line = key_node.start_mark.line + 1
            if sub in lines:
                problems.items.append(
                    Problem(
                        problems.source.file,
                        format_path(sub),
                        f"key given twice (first on line {lines[sub]})",
                        line=line,
                        hint="YAML keeps only the last one; remove or merge the duplicate",
                    )
                )
            else:
                lines[sub] = line
            _index_lines(value_node, sub, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            sub = (*path, index)
            lines[sub] = item.start_mark.line + 1
            _index_lines(item, sub, lines, problems)


# ---------------------------------------------------------------- schema

_TYPE_WORDS = {
    "integer": "an integer",
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
    "number": "a number",
}
_BYTES = r"[0-9]+(B|kB|MB|GB|TB|PB|EB|KiB|MiB|GiB|TiB|PiB|EiB)?"
_CPU = r"^([1-9][0-9]*|[0-9]+-[0-9]+|[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)+)$"
_SIZE_HINT = "LXD sizes: a number of bytes with an optional unit, e.g. 512MiB, 2GiB, 500MB"


def _obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False, **extra}


_NAME = {
    "type": "string",
    "pattern": "^[a-z][a-z0-9-]*$",
    "maxLength": NAME_MAX,
    "x-expected": f"a lowercase name: a letter, then letters, digits or '-', at most {NAME_MAX} characters",
    "x-hint": "the lab name prefixes every container name (dl-<lab>-<node>): keep it short",
}
_RECIPE = {
    "type": "string",
    "pattern": "^[a-z][a-z0-9-]*$",
    "x-expected": "a recipe name (the file images/recipes/<name>.yaml)",
}
_LIMITS = _obj(
    {
        "cpu": {
            "type": ["string", "integer"],
            "pattern": _CPU,
            "minimum": 1,
            "x-expected": "an LXD limits.cpu value: a CPU count (2) or a CPU set ('0-1', '0,2')",
        },
        "memory": {
            "type": "string",
            "pattern": f"^({_BYTES}|[1-9][0-9]?%|100%)$",
            "x-expected": "an LXD limits.memory value: a size (256MiB, 1GiB) or a percentage (50%)",
            "x-hint": _SIZE_HINT,
        },
    }
)
_HOST = _obj(
    {
        "name": {
            "type": "string",
            "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
            "maxLength": 63,
            "x-expected": "a host name: lowercase letters, digits and '-', at most 63 characters",
        },
        "kind": {"enum": ["local", "ssh", "aws"]},
        "address": {"type": "string", "minLength": 1},
        "capacity": {"type": "integer", "minimum": 1, "maximum": 100000},
        "ssh_user": {"type": "string", "minLength": 1},
        # the private key to log in with (default: one generated for the lab, see modules/lab_secrets)
        "ssh_key": {"type": "string", "minLength": 1},
        # pins the host's ssh key (`ssh-keygen -lf` form); needed to accept a key that changed
        "host_key": {
            "type": "string",
            "pattern": "^SHA256:[A-Za-z0-9+/]{43}$",
            "x-expected": "an ssh host key fingerprint: SHA256: and 43 base64 characters",
        },
        # this host's limit on parallel actions per stage (a small host among big ones)
        "max_workers": {"type": "integer", "minimum": 1, "maximum": 64},
        # the host interface VXLAN tunnels leave through (default: the route to the peer decides)
        "underlay": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_.-]{1,15}$",
            "x-expected": "an interface name: at most 15 letters, digits, '_', '.' or '-'",
        },
        "aws": _obj(
            {
                "region": {"type": "string", "minLength": 1},
                "instance_type": {"type": "string", "minLength": 1},
                "ami": {"type": "string", "minLength": 1},
                "key_name": {"type": "string", "minLength": 1},
                "availability_zone": {"type": "string", "minLength": 1},
                "volume_size": {"type": "integer", "minimum": 8},
                "vpc_cidr": {"type": "string", "minLength": 1},
                "admin_cidr": {"type": "string", "minLength": 1},  # may reach ssh and the LXD API
            }
        ),
    },
    required=["name"],
)


def lab_schema(topology_schema: Mapping[str, Any] | None, kinds: Iterable[str]) -> dict[str, Any]:
    """The JSON schema of a lab file; `topology_schema` is the chosen generator's (None: kind unknown)."""
    kinds = sorted(kinds)
    kind_schema = {"enum": kinds}
    if topology_schema is None:
        topology: dict[str, Any] = {"type": "object", "properties": {"kind": kind_schema}}
    else:
        params = {k: v for k, v in topology_schema.items() if k not in ("$schema", "$id")}
        topology = {
            **params,
            "type": "object",
            "properties": {"kind": kind_schema, **params.get("properties", {})},
            "additionalProperties": False,
        }
    topology["required"] = sorted({"kind", *topology.get("required", [])})
    topology["x-hint"] = "e.g. topology: {kind: leaf-spine, spines: 2, leaves: 2, servers_per_leaf: 3}"
    role_keys = {role: _RECIPE for role in ROLE_KEYS}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **_obj(
            {
                "name": _NAME,
                "description": {"type": "string"},
                "hosts": {"type": "array", "minItems": 1, "items": _HOST},
                "topology": topology,
                "addressing": _obj(
                    {
                        **{pool: {"type": "string", "x-expected": "an IPv4 network"} for pool in POOL_NAMES},
                        "mtu": {"type": "integer", "minimum": 1280, "maximum": 9000},
                    }
                ),
                "images": _obj(role_keys),
                "images_options": {
                    "type": "object",
                    "properties": {
                        "mirror": {"type": "string", "minLength": 1},
                        "aca_source": {"type": "string", "minLength": 1},
                        "suite": {"type": "string", "minLength": 1},
                    },
                },
                "resources": _obj({"defaults": _LIMITS, **{role: _LIMITS for role in ROLE_KEYS}}),
                "placement": _obj(
                    {
                        "strategy": {"enum": list(PLACEMENT_STRATEGIES)},
                        "file": {"type": "string", "minLength": 1},
                    }
                ),
                "lxd": _obj(
                    {
                        "storage": {"enum": ["auto", "btrfs", "dir"]},
                        "storage_size": {
                            "type": "string",
                            "pattern": f"^{_BYTES}$",
                            "x-expected": "an LXD size (20GiB)",
                            "x-hint": _SIZE_HINT,
                        },
                        "max_workers": {"type": "integer", "minimum": 1, "maximum": 64},
                        "privileged": {"type": "boolean"},
                        "pool": {
                            "type": "string",
                            "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$",
                            "x-expected": "an LXD storage pool name (letters, digits, '_', '.', '-')",
                        },
                    }
                ),
                "fabric": _obj(
                    {
                        "bridge": {
                            "enum": ["ovs", "linux"],
                            "x-hint": "linux: kernel bridges with STP, for large labs on hosts without "
                                      "the openvswitch module (userspace OVS switches cost CPU at idle)",
                        },
                        "mode": {
                            "enum": ["l2", "l3"],
                            "x-hint": "l2: one bridged domain; l3: routed links with eBGP and ECMP (FRR)",
                        },
                    }
                ),
                "state": _obj(
                    {
                        "backend": {
                            "enum": ["local", "pg", "s3"],
                            "x-hint": "local: a file in this checkout; pg or s3: one state for a team or CI",
                        },
                        "lock_timeout": {
                            "type": "string",
                            "pattern": "^[0-9]+(s|m)$",
                            "x-expected": "a duration such as 60s or 5m",
                        },
                        "pg": _obj({
                            # a conn_str carries a password: give it through PG_CONN_STR instead
                            "schema_name": {"type": "string", "pattern": "^[a-z_][a-z0-9_]{0,62}$",
                                            "x-expected": "a PostgreSQL schema name"},
                        }),
                        "s3": _obj({
                            "bucket": {"type": "string", "minLength": 3},
                            "key": {"type": "string", "minLength": 1},
                            "region": {"type": "string", "minLength": 1},
                            "endpoint": {"type": "string", "minLength": 1},
                            "use_lockfile": {"type": "boolean"},
                            "dynamodb_table": {"type": "string", "minLength": 1},
                        }, required=["bucket"]),
                    }
                ),
                "alcor": {
                    "anyOf": [{"type": "null"}, {"const": "default"}, {"type": "object"}],
                    "x-expected": "null, 'default' or a mapping of Alcor settings",
                },
                "controller": {
                    "type": ["null", "object"],
                    "x-expected": "null or a mapping of controller settings",
                },
            },
            required=["name", "topology"],
        ),
    }


def _range_words(schema: Mapping[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    noun = "an integer" if schema.get("type") == "integer" else "a number"
    if low is not None and high is not None:
        return f"{noun} between {low} and {high}"
    return f"{noun} >= {low}" if low is not None else f"{noun} <= {high}"


def _schema_problems(error: ValidationError) -> list[tuple[AttrPath, str, object, str | None]]:
    """Turn one jsonschema error into (path, message, value, hint) entries in our own words."""
    path: AttrPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        return [
            (
                (*path, key),
                "unknown key",
                None,
                did_you_mean(key, allowed) or f"valid keys here: {', '.join(allowed)}",
            )
            for key in sorted(set(error.instance) - set(allowed), key=str)
        ]
    if kind == "required":
        props = schema.get("properties", {})
        return [
            ((*path, key), "is required", None, props.get(key, {}).get("x-hint"))
            for key in error.validator_value
            if key not in error.instance
        ]
    hint = schema.get("x-hint")
    if "x-expected" in schema:
        message = f"must be {schema['x-expected']}"
    elif kind == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        message = "must be " + " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    elif kind in ("enum", "const"):
        choices = error.validator_value if kind == "enum" else [error.validator_value]
        message = "must be one of: " + ", ".join(str(c) for c in choices)
        hint = did_you_mean(error.instance, map(str, choices)) if isinstance(error.instance, str) else None
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        message = f"must be {_range_words(schema)}"
    elif kind == "minLength":
        message = (
            "must not be empty" if error.validator_value == 1 else f"needs {error.validator_value}+ chars"
        )
    elif kind == "maxLength":
        message = f"must be at most {error.validator_value} characters"
    elif kind == "minItems":
        message = f"must have at least {error.validator_value} item(s)"
    else:
        message = error.message
    return [(path, message, error.instance, hint)]


# ---------------------------------------------------------------- validate stage


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
        for path, message, value, hint in _schema_problems(error):
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
