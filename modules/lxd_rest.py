"""Thin calls on the LXD REST API through one pylxd client, shared by the nodes/links/fabric reconcilers.

Everything goes through `client.api` (one HTTP session, a bounded connection pool), so a
reconciler's file descriptors do not grow with the size of the lab, and tests can swap in the
in-memory fake of `tests/fakes/lxd.py`. Commands run with `record-output` instead of websockets:
plain HTTP, safe from worker threads.
"""

from __future__ import annotations

import json
import logging
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from pylxd import client as pylxd_client
from pylxd.exceptions import LXDAPIException
from pylxd.exceptions import NotFound as NotFound  # re-exported for the reconcilers

from cdk.names import LAB_KEY as LAB_KEY  # re-exported: the reconcilers read it from here
from cdk.names import OWNER_KEY as OWNER_KEY

log = logging.getLogger(__name__)
T = TypeVar("T")


def connect(endpoint: dict[str, Any] | None, workers: int = 8) -> Any:
    """A pylxd client for the host a stage spec names (`endpoint`: name, kind, address).

    One client per host and process, shared by every reconciler and thread, so the number of
    open sockets stays at the worker count whatever the lab size. Over the unix socket, pylxd
    keeps a single pooled connection (concurrent workers would each open and drop a socket per
    request): the session gets a pool as wide as the worker pool.
    """
    from modules.lxd_client import connect as lxd_connect

    key = json.dumps(endpoint, sort_keys=True, default=str)
    with _clients_lock:
        cached = _clients.get(key)
        if cached is not None and cached[1] >= workers:
            return cached[0]
        client = lxd_connect(endpoint)
        session = getattr(client.api, "session", None)
        if session is not None and isinstance(session.adapters.get(_UNIX_SCHEME), pylxd_client._UnixAdapter):
            session.mount(_UNIX_SCHEME, _WideUnixAdapter(workers))
        _clients[key] = (client, workers)
        return client


_clients: dict[str, tuple[Any, int]] = {}
_clients_lock = threading.Lock()


_UNIX_SCHEME = "http+unix://"


class _WideUnixConnectionPool(urllib3.HTTPConnectionPool):
    def __init__(self, socket_url: str, maxsize: int):
        super().__init__("localhost", maxsize=maxsize)
        self.socket_url = socket_url

    def _new_conn(self) -> Any:
        return pylxd_client._UnixSocketHTTPConnection(self.socket_url)


class _WideUnixAdapter(pylxd_client._UnixAdapter):
    """pylxd's unix-socket adapter with `maxsize` kept-alive connections instead of one."""

    def __init__(self, maxsize: int):
        super().__init__()
        self.maxsize = max(1, maxsize)

    def get_connection(self, url: Any, proxies: Any = None) -> Any:
        with self.pools.lock:
            conn = self.pools.get(url)
            if conn is None:
                conn = _WideUnixConnectionPool(url, self.maxsize)
                self.pools[url] = conn
            return conn


class LxdCallError(RuntimeError):
    """An LXD request or operation failed; the text is LXD's own error."""


#: how LXD reports a full storage pool: the errno text of the unpack, copy or write that failed
_NO_SPACE = ("no space left on device", "enospc")


def out_of_space(text: str) -> bool:
    """Whether an LXD error says its storage pool (or the disk under it) is full."""
    lowered = text.lower()
    return any(marker in lowered for marker in _NO_SPACE)


class PoolFullError(LxdCallError):
    """LXD could not write to a storage pool: it is full. LXD's own text (thousands of tar lines
    for an image unpack) is cut to its first line."""

    def __init__(self, pool: str, lxd_text: str):
        self.pool = pool
        excerpt = space_excerpt(lxd_text)
        super().__init__(f"storage pool {pool} is full: no space left on device (LXD: {excerpt})")


def space_excerpt(text: str) -> str:
    """What LXD was doing and the first write that failed, from its (possibly huge) error text:
    'Failed creating instance from image: Unpack failed: tar: metadata.yaml: Cannot write: No space
    left on device' instead of the tar command line and one line per file."""
    lines = text.strip().splitlines() or [""]
    context = lines[0].split(": Failed to run")[0][:120]
    failed = next((line for line in lines if out_of_space(line)), "")
    detail = failed.rsplit("(", 1)[-1].strip()[:160]
    return context if not detail or detail in context else f"{context}: {detail}"


def pool_full_hint(pool: str) -> str:
    return (
        f"see 'lxc storage info {pool}'; free space in it (delete unused containers and images), or give "
        "the lab a bigger pool: lxd.storage_size sizes a pool when it is created, so set a new lxd.pool "
        "name with a larger lxd.storage_size; then 'distrilab up' continues, or 'distrilab down' "
        "removes the lab"
    )


@dataclass(frozen=True)
class ExecResult:
    command: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> ExecResult:
        if not self.ok:
            tail = (self.stderr.strip() or self.stdout.strip())[-800:]
            raise LxdCallError(f"'{self.command}' exited {self.returncode}: {tail}")
        return self


def metadata(response: Any) -> Any:
    return response.json().get("metadata")


WAIT_SLICE = 60


def wait_operation(client: Any, response: Any, timeout: int = 120) -> dict[str, Any]:
    """Wait for the background operation a request started; raise LxdCallError if it failed."""
    body = response.json()
    if body.get("type") != "async":
        return body.get("metadata") or {}
    op_id = body["operation"].rsplit("/", 1)[-1]
    # in slices shorter than the HTTP client's own timeout (120 s), however long the wait
    deadline = time.monotonic() + timeout
    while True:
        left = max(1, min(WAIT_SLICE, int(deadline - time.monotonic())))
        op = metadata(client.api.operations[op_id].wait.get(params={"timeout": left}))
        if op.get("status") != "Running" or time.monotonic() >= deadline:
            break
    if op.get("status") == "Running":
        raise LxdCallError(f"operation {op_id} ({op.get('description')}) still running after {timeout}s")
    if op.get("status") != "Success":
        raise LxdCallError(op.get("err") or f"operation {op_id} ended {op.get('status')}")
    return op


#: LXD's cluster database (dqlite) timing out under load: the request was not applied and may be
#: sent again (seen in CI on nested cluster members: "Failed creating instance record: Failed to
#: begin transaction: context deadline exceeded")
TRANSIENT_DB_ERRORS = ("Failed to begin transaction", "context deadline exceeded", "database is locked")
#: seconds before each new try of a request the cluster database refused
TRANSIENT_RETRY_DELAYS = (2.0, 5.0, 10.0)


def is_transient(err: Exception) -> bool:
    text = error_text(err)
    return any(marker in text for marker in TRANSIENT_DB_ERRORS)


def retry_transient(call: Callable[[], T], what: str, before_retry: Callable[[], None] | None = None) -> T:
    """`call()`, sent again after a pause while it fails with a transient database error; the
    last error is raised. `before_retry` undoes what a failed try may have left (a half-made record)."""
    for delay in TRANSIENT_RETRY_DELAYS:
        try:
            return call()
        except Exception as err:  # pylxd raises its own exceptions, LXD operations LxdCallError
            if not is_transient(err):
                raise
            log.warning("%s: %s; trying again in %.0f s", what, error_text(err), delay)
        time.sleep(delay)
        if before_retry is not None:
            before_retry()
    return call()


def error_text(err: Exception) -> str:
    """LXD's error message from a pylxd exception (or the exception text)."""
    response = getattr(err, "response", None)
    if response is not None:
        try:
            return str(response.json().get("error") or err)
        except ValueError:
            pass
    return str(err)


def owned_instances(client: Any, lab: str) -> dict[str, dict[str, Any]]:
    """Every instance labelled with the lab (one request, recursion=1): name -> instance object."""
    items = metadata(client.api.instances.get(params={"recursion": 1})) or []
    # a cluster lists the instances of a member it cannot reach (yet) as null
    return {i["name"]: i for i in items if i and i.get("config", {}).get(LAB_KEY) == lab}


def set_state(client: Any, name: str, action: str, force: bool = True, timeout: int = 60) -> None:
    body = {"action": action, "timeout": timeout, "force": force}
    wait_operation(client, client.api.instances[name].state.put(json=body), timeout=timeout + 30)


def status(client: Any, name: str) -> str:
    # the instance record has the status too; /state also sums disk and network usage (20x slower)
    return metadata(client.api.instances[name].get())["status"]


def delete_instance(client: Any, name: str, running: bool) -> None:
    """Stop (forced) if needed, then delete: what `lxc delete --force` does."""
    if running:
        set_state(client, name, "stop", force=True)
    wait_operation(client, client.api.instances[name].delete())


def execute(client: Any, name: str, argv: list[str], timeout: int = 120) -> ExecResult:
    """Run a command in a running instance and collect its exit code and output (plain HTTP)."""
    body = {
        "command": argv,
        "record-output": True,
        "wait-for-websocket": False,
        "interactive": False,
        "environment": {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    }
    op = wait_operation(client, client.api.instances[name].exec.post(json=body), timeout=timeout)
    meta = op.get("metadata") or {}
    outputs = meta.get("output") or {}
    texts = {}
    for fd in ("1", "2"):
        path = outputs.get(fd)
        texts[fd] = _read_log(client, name, path) if path else ""
    return ExecResult(command_text(argv), int(meta.get("return", -1)), texts["1"], texts["2"])


def command_text(argv: list[str]) -> str:
    """A command line for messages, cut at 120 characters."""
    text = shlex.join(argv)
    return text if len(text) < 120 else text[:117] + "..."


def _read_log(client: Any, name: str, path: str) -> str:
    """Fetch one recorded exec output and remove it so logs do not pile up per check run."""
    log_name = path.rsplit("/", 1)[-1]
    node = client.api.instances[name].logs[log_name]
    text = node.get(is_api=False).content.decode(errors="replace")  # raw file, not an API reply
    try:
        node.delete()
    except Exception as err:  # the output was read; a stale log file is harmless
        log.debug("cannot delete exec log %s of %s: %s", log_name, name, err)
    return text


def sh(client: Any, name: str, script: str, timeout: int = 120) -> ExecResult:
    return execute(client, name, ["sh", "-c", script], timeout=timeout)


# ------------------------------------------------------------------ files in instances


def push_file(client: Any, instance: str, path: str, content: bytes, mode: str = "0644") -> None:
    """Write a file into an instance (running or stopped), creating its parent directories."""
    parts = Path(path).parent.parts
    for i in range(2, len(parts) + 1):
        directory = "/".join(parts[:i]).replace("//", "/")
        headers = {"X-LXD-type": "directory", "X-LXD-mode": "0755"}
        try:
            client.api.instances[instance].files.post(params={"path": directory}, headers=headers)
        except LXDAPIException as err:
            if "exist" not in error_text(err).lower():
                raise LxdCallError(f"mkdir {directory} in {instance}: {error_text(err)}") from err
    headers = {
        "X-LXD-type": "file",
        "X-LXD-mode": mode,
        "X-LXD-uid": "0",
        "X-LXD-gid": "0",
        "X-LXD-write": "overwrite",
    }
    try:
        client.api.instances[instance].files.post(params={"path": path}, data=content, headers=headers)
    except LXDAPIException as err:
        raise LxdCallError(f"write {path} in {instance}: {error_text(err)}") from err


def read_file(client: Any, instance: str, path: str) -> bytes:
    """A file's bytes from an instance; LxdCallError when it cannot be read (e.g. it does not exist)."""
    try:
        # is_api=False: the body is the file itself (a JSON file is not an LXD API answer)
        return client.api.instances[instance].files.get(params={"path": path}, is_api=False).content
    except LXDAPIException as err:
        raise LxdCallError(f"read {path} in {instance}: {error_text(err)}") from err


def pull_file(client: Any, instance: str, path: str) -> str:
    return read_file(client, instance, path).decode(errors="replace")

