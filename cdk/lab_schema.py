"""The JSON schema of a lab file, and its errors turned into located problems with a hint.

cdk/lab.py validates a lab file against it (each topology kind adds its own parameters) before
its semantic checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import ValidationError

from cdk.lab_source import AttrPath, did_you_mean
from cdk.model import SERVER_ROLES, SWITCH_ROLES

NAME_MAX = 20
DEFAULT_POOLS: dict[str, str] = {
    "management": "10.210.0.0/16",
    "loopbacks": "10.211.0.0/16",
    "p2p": "10.212.0.0/16",
    "servers": "10.213.0.0/16",
}
POOL_NAMES = tuple(DEFAULT_POOLS)
PLACEMENT_STRATEGIES = ("round-robin", "partition", "file")
#: keys of `images` and `resources`: a node role, or a node kind (switch/server)
ROLE_KEYS = tuple(dict.fromkeys((*SWITCH_ROLES, *SERVER_ROLES, "switch", "server")))


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


def schema_problems(error: ValidationError) -> list[tuple[AttrPath, str, object, str | None]]:
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
