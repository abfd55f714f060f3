"""An in-memory LXD daemon behind the slice of pylxd the reconcilers use: `client.api` REST calls.

`FakeLxd().api` answers `client.api.instances[name].state.put(json=...)` and friends the way LXD
5.0 does for the calls in modules/lxd_rest.py, modules/nodes.py and modules/fabric.py: instances
(create from image or copy, state changes, PATCH/PUT, delete, exec with recorded output),
managed networks, image aliases and operations. Errors raise pylxd's own exceptions with LXD's
messages, so code under test sees what it would see against the real daemon.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pylxd import exceptions

#: (instance name, argv) -> (exit code, stdout, stderr)
ExecHandler = Callable[[str, list[str]], tuple[int, str, str]]


class FakeResponse:
    def __init__(self, status_code: int, body: Any, content: bytes | None = None):
        self.status_code = status_code
        self._body = body
        self.content = content if content is not None else b""

    def json(self) -> Any:
        return self._body


def _sync(metadata: Any) -> FakeResponse:
    return FakeResponse(200, {"type": "sync", "status": "Success", "status_code": 200, "metadata": metadata})


def _error(code: int, message: str) -> None:
    response = FakeResponse(code, {"type": "error", "error": message, "error_code": code})
    if code == 404:
        raise exceptions.NotFound(response)
    if code == 409:
        raise exceptions.Conflict(response)
    raise exceptions.LXDAPIException(response)


@dataclass
class FakeLxd:
    """The daemon's state; `calls` records (method, path) of every request, in order."""

    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> fingerprint
    exec_handler: ExecHandler = field(default=lambda name, argv: (0, "", ""))
    calls: list[tuple[str, str]] = field(default_factory=list)
    execs: list[tuple[str, list[str]]] = field(default_factory=list)
    #: instances that die right after a start (what exhausted inotify limits do)
    die_on_start: set[str] = field(default_factory=set)
    #: instance -> how many of its creates time out in the cluster database (LXD's own error text)
    busy_creates: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[str, dict[str, Any]] = {}
        self._logs: dict[str, bytes] = {}
        self._ids = itertools.count(1)

    @property
    def api(self) -> _Node:
        return _Node(self, "")

    def add_instance(self, name: str, status: str = "Running", config: dict[str, str] | None = None,
                     devices: dict[str, Any] | None = None) -> None:
        """Put an instance in place directly (for 'created by someone else' scenarios)."""
        self.instances[name] = {"name": name, "status": status, "config": dict(config or {}),
                                "devices": dict(devices or {}), "architecture": "x86_64", "profiles": [],
                                "ephemeral": False, "stateful": False, "description": ""}

    # -------------------------------------------------------------- dispatch

    def request(self, method: str, path: str, body: Any = None, params: Any = None) -> FakeResponse:
        with self._lock:
            self.calls.append((method, path))
            parts = [p for p in path.split("/") if p]
            handler = getattr(self, f"_{parts[0]}", None) if parts else None
            if handler is None:
                _error(404, f"not found: {path}")
            return handler(method, parts[1:], body or {}, params or {})

    def _operation(self, result: dict[str, Any] | None = None, err: str = "") -> FakeResponse:
        op_id = f"op{next(self._ids)}"
        self._ops[op_id] = {"id": op_id, "status": "Failure" if err else "Success", "err": err,
                            "metadata": result or {}}
        return FakeResponse(202, {"type": "async", "operation": f"/1.0/operations/{op_id}"})

    def _operations(self, method: str, parts: list[str], body: Any, params: Any) -> FakeResponse:
        op = self._ops.get(parts[0])
        if op is None:
            _error(404, "Operation not found")
        return _sync(op)

    def _images(self, method: str, parts: list[str], body: Any, params: Any) -> FakeResponse:
        if parts[:1] == ["aliases"] and len(parts) == 2 and parts[1] in self.aliases:
            return _sync({"name": parts[1], "target": self.aliases[parts[1]]})
        _error(404, "Image alias not found")
        raise AssertionError  # unreachable

    def _networks(self, method: str, parts: list[str], body: Any, params: Any) -> FakeResponse:
        if not parts and method == "POST":
            if body["name"] in self.networks:
                _error(409, f"The network already exists: {body['name']}")
            self.networks[body["name"]] = {"name": body["name"], "type": body.get("type", "bridge"),
                                           "managed": True, "config": dict(body.get("config", {}))}
            return _sync({})
        net = self.networks.get(parts[0]) if parts else None
        if net is None:
            _error(404, "Network not found")
            raise AssertionError
        if method == "GET":
            return _sync(copy.deepcopy(net))
        if method == "PATCH":
            net["config"].update(body.get("config", {}))
            return _sync({})
        if method == "DELETE":
            if any(d.get("network") == net["name"] for i in self.instances.values()
                   for d in i["devices"].values()):
                _error(400, "The network is currently in use")
            del self.networks[parts[0]]
            return _sync({})
        _error(400, f"unsupported {method} on a network")
        raise AssertionError

    def _instances(self, method: str, parts: list[str], body: Any, params: Any) -> FakeResponse:
        if not parts:
            if method == "GET":
                if params.get("recursion"):
                    return _sync([copy.deepcopy(i) for i in self.instances.values()])
                return _sync([f"/1.0/instances/{n}" for n in self.instances])
            if method == "POST":
                return self._create(body)
        name = parts[0]
        inst = self.instances.get(name)
        if inst is None:
            _error(404, "Instance not found")
            raise AssertionError
        sub = parts[1] if len(parts) > 1 else ""
        if sub == "state":
            if method == "GET":
                running = inst["status"] == "Running"
                return _sync({"status": inst["status"], "pid": 1000 + len(name) if running else 0})
            return self._set_state(inst, body["action"])
        if sub == "exec":
            return self._exec(inst, body)
        if sub == "logs":
            key = f"{name}/{parts[2]}"
            if method == "DELETE":
                self._logs.pop(key, None)
                return _sync({})
            return FakeResponse(200, None, self._logs.get(key, b""))
        if method == "GET":
            return _sync(copy.deepcopy(inst))
        if method == "PATCH":
            inst["config"].update({k: v for k, v in body.get("config", {}).items()})
            inst["config"] = {k: v for k, v in inst["config"].items() if v != ""}
            inst["devices"].update(body.get("devices", {}))
            return self._operation()
        if method == "PUT":
            inst["config"] = {k: v for k, v in body.get("config", {}).items() if v != ""}
            inst["devices"] = dict(body.get("devices", {}))
            return self._operation()
        if method == "DELETE":
            if inst["status"] == "Running":
                return self._operation(err="Instance is running")
            del self.instances[name]
            return self._operation()
        _error(400, f"unsupported {method} {sub}")
        raise AssertionError

    def _create(self, body: dict[str, Any]) -> FakeResponse:
        name = body["name"]
        if self.busy_creates.get(name):
            self.busy_creates[name] -= 1
            return self._operation(err="Failed creating instance record: Failed to begin transaction: "
                                       "context deadline exceeded")
        if name in self.instances:
            return self._operation(err='This "instances" entry already exists')
        source = body["source"]
        config = dict(body.get("config", {}))
        devices = dict(body.get("devices", {}))
        if source["type"] == "image":
            fingerprint = source.get("fingerprint") or self.aliases.get(source.get("alias", ""))
            if fingerprint not in self.aliases.values():
                return self._operation(err="Image not found")
            config["volatile.base_image"] = fingerprint
        elif source["type"] == "copy":
            src = self.instances.get(source["source"])
            if src is None:
                return self._operation(err="Instance not found")
            for key, value in src["config"].items():  # LXD: request keys win, the rest is copied
                config.setdefault(key, value)
            for key, value in src["devices"].items():
                devices.setdefault(key, value)
        else:
            return self._operation(err=f"unsupported source {source['type']}")
        self.add_instance(name, "Stopped", {k: v for k, v in config.items() if v != ""}, devices)
        return self._operation()

    def _set_state(self, inst: dict[str, Any], action: str) -> FakeResponse:
        if action in ("start", "unfreeze"):
            inst["status"] = "Stopped" if inst["name"] in self.die_on_start else "Running"
        elif action == "stop":
            inst["status"] = "Stopped"
        elif action == "freeze":
            inst["status"] = "Frozen"
        return self._operation()

    def _exec(self, inst: dict[str, Any], body: dict[str, Any]) -> FakeResponse:
        if inst["status"] != "Running":
            return self._operation(err="Instance is not running")
        argv = list(body["command"])
        self.execs.append((inst["name"], argv))
        code, out, err = self.exec_handler(inst["name"], argv)
        n = next(self._ids)
        paths = {}
        for fd, text in (("1", out), ("2", err)):
            log = f"exec_{n}.{'stdout' if fd == '1' else 'stderr'}"
            self._logs[f"{inst['name']}/{log}"] = text.encode()
            paths[fd] = f"/1.0/instances/{inst['name']}/logs/{log}"
        return self._operation({"return": code, "output": paths})


class _Node:
    """`client.api.a.b[c]` path builder with pylxd's get/post/put/patch/delete."""

    def __init__(self, fake: FakeLxd, path: str):
        self._fake = fake
        self._path = path

    def __getattr__(self, name: str) -> _Node:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Node(self._fake, f"{self._path}/{name}")

    def __getitem__(self, item: str) -> _Node:
        return _Node(self._fake, f"{self._path}/{item}")

    def _call(self, method: str, kwargs: dict[str, Any]) -> FakeResponse:
        return self._fake.request(method, self._path, kwargs.get("json"), kwargs.get("params"))

    def get(self, **kwargs: Any) -> FakeResponse:
        return self._call("GET", kwargs)

    def post(self, **kwargs: Any) -> FakeResponse:
        return self._call("POST", kwargs)

    def put(self, **kwargs: Any) -> FakeResponse:
        return self._call("PUT", kwargs)

    def patch(self, **kwargs: Any) -> FakeResponse:
        return self._call("PATCH", kwargs)

    def delete(self, **kwargs: Any) -> FakeResponse:
        return self._call("DELETE", kwargs)
