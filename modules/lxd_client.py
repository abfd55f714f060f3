"""One way to reach an LXD daemon: the local unix socket, or a remote member over TLS.

Every reconciler calls `connect(host)`; nothing else in distrilab builds a `pylxd.Client`.

- Local hosts (`kind == "local"`, or no host at all): the daemon's unix socket. `$LXD_DIR` picks
  a non-default daemon directory (the socket is `$LXD_DIR/unix.socket`), as `lxc` does.
- Remote hosts (`kind` "ssh" or "aws", or anything with an `address`): `https://<address>:8443`
  with distrilab's client certificate (`client.crt`/`client.key` in `cert_dir()`), verified
  against the member's server certificate pinned at `cert_dir()/servers/<host>.crt` when present.
  The certificate pair is created on first use (`ensure_client_cert`); the cluster trusts it when
  the host is bootstrapped (`modules.lxd_host` adds it with `lxc config trust add`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pylxd
from pylxd.exceptions import ClientConnectionFailed, LXDAPIException

from cdk.errors import DistrilabError
from cdk.model import Host
from modules.file_lock import locked
from modules.host_shell import is_local

log = logging.getLogger(__name__)

LXD_PORT = 8443
TRUST_RETRIES = 20
DEFAULT_LXD_DIR = Path("/var/lib/lxd")


class LxdUnreachableError(DistrilabError):
    """The LXD daemon of a host does not answer."""

    def __init__(self, where: str, err: object, hint: str):
        self.hint = hint
        super().__init__(f"LXD at {where} does not answer: {err}\n  hint: {hint}")


def cert_dir(lab: str | None = None) -> Path:
    """Where distrilab keeps an LXD client certificate: $DISTRILAB_LXD_CERTS, else the lab's own
    (modules/lab_secrets.py) when a lab is named, else ~/.config/distrilab/lxd."""
    env = os.environ.get("DISTRILAB_LXD_CERTS")
    if env:
        return Path(env)
    if lab:
        from modules.lab_secrets import lxd_dir

        return lxd_dir(lab)
    return Path.home() / ".config" / "distrilab" / "lxd"


def local_socket() -> Path:
    return Path(os.environ.get("LXD_DIR") or DEFAULT_LXD_DIR) / "unix.socket"


@dataclass(frozen=True)
class Endpoint:
    """How to reach one host's daemon; `url` is None for the local unix socket."""

    host: str
    url: str | None = None
    cert: tuple[Path, Path] | None = None  # (client.crt, client.key)
    verify: Path | bool = True  # pinned server certificate, or False when none is pinned yet

    @property
    def remote(self) -> bool:
        return self.url is not None

    def describe(self) -> str:
        return self.url or str(local_socket())


def endpoint_for(host: Host | Mapping[str, Any] | None) -> Endpoint:
    """Pure: the endpoint a host spec describes (a `Host`, its dict form, or None for local)."""
    if host is None:
        return Endpoint("local")
    data = (
        host if isinstance(host, Mapping) else {"name": host.name, "kind": host.kind, "address": host.address}
    )
    name = str(data.get("name") or "local")
    if is_local(data):
        return Endpoint(name)
    address = data.get("address")
    if not address:
        raise DistrilabError(f"host {name}: kind {data.get('kind')} needs an address to reach its LXD API")
    certs = cert_dir(data.get("lab"))
    pinned = certs / "servers" / f"{name}.crt"
    url = address if str(address).startswith("https://") else f"https://{_bracket(str(address))}:{LXD_PORT}"
    return Endpoint(
        name,
        url=url,
        cert=(certs / "client.crt", certs / "client.key"),
        verify=pinned if pinned.is_file() else False,
    )


def connect(host: Host | Mapping[str, Any] | None = None, timeout: float | None = 120) -> pylxd.Client:
    """A pylxd client for the host's daemon; raises LxdUnreachableError (with a hint) when it is down."""
    ep = endpoint_for(host)
    try:
        if not ep.remote:
            sock = local_socket()
            if not sock.exists():
                raise LxdUnreachableError(str(sock), "no socket", local_hint())
            client = pylxd.Client(endpoint=str(sock) if "LXD_DIR" in os.environ else None, timeout=timeout)
        else:
            assert ep.cert is not None
            ensure_client_cert(ep.cert[0].parent)
            if ep.verify is False:
                log.warning(
                    "host %s: no pinned server certificate in %s; TLS is not verified",
                    ep.host,
                    ep.cert[0].parent / "servers",
                )
            session = pylxd.client.get_session_for_url(
                ep.url, verify=str(ep.verify) if ep.verify else False, cert=(str(ep.cert[0]), str(ep.cert[1]))
            )
            # requests would take REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the environment over the
            # pinned certificate (machines that set them for an egress proxy): LXD is not behind one
            session.trust_env = False
            client = pylxd.Client(endpoint=ep.url, timeout=timeout, session=session)
            # a member that just joined a cluster learns the trust store a moment later (seen:
            # "not trusted" from the newest member while the first one already trusted us)
            for _ in range(TRUST_RETRIES):
                if client.trusted:
                    break
                time.sleep(1)
                client = pylxd.Client(endpoint=ep.url, timeout=timeout, session=session)
            if not client.trusted:
                raise LxdUnreachableError(
                    ep.describe(),
                    "our client certificate is not trusted",
                    f"run 'lxc config trust add {ep.cert[0]}' on {ep.host}, or bootstrap it with "
                    "'python -m modules.lxd_host ensure'",
                )
    except (ClientConnectionFailed, LXDAPIException, OSError) as err:
        hint = _REMOTE_HINT if ep.remote else local_hint()
        raise LxdUnreachableError(ep.describe(), err, hint) from err
    return client


def ensure_client_cert(directory: Path) -> tuple[Path, Path]:
    """Create distrilab's client certificate pair once (openssl, EC P-384, 10 years); idempotent.

    Every host's stages ask for it at once on a lab's first apply (one process each): unlocked,
    two openssl runs wrote the same files and left one's key beside the other's certificate
    ("KEY_VALUES_MISMATCH"). One process creates the pair, in temporaries renamed key first, so
    the certificate's presence means the pair is whole."""
    crt, key = directory / "client.crt", directory / "client.key"
    if crt.is_file() and key.is_file():
        return crt, key
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locked(crt):
        if crt.is_file() and key.is_file():
            return crt, key
        new_key, new_crt = key.with_name(f".{key.name}.tmp"), crt.with_name(f".{crt.name}.tmp")
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:secp384r1",
                "-sha384",
                "-nodes",
                "-days",
                "3650",
                "-subj",
                "/CN=distrilab",
                "-keyout",
                str(new_key),
                "-out",
                str(new_crt),
            ],
            check=True,
            capture_output=True,
        )
        new_key.chmod(0o600)
        new_key.replace(key)
        new_crt.replace(crt)
    log.info("created LXD client certificate %s", crt)
    return crt, key


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


_LOCAL_HINT = (
    "start it with '.ci/setup' or 'python -m modules.lxd_host ensure' (installs and starts LXD if needed), "
    "then run 'distrilab up' again (it continues)"
)


def custom_lxd_dir() -> Path | None:
    """$LXD_DIR when it names another directory than the system daemon's."""
    env = os.environ.get("LXD_DIR")
    return Path(env) if env and Path(env).resolve() != DEFAULT_LXD_DIR.resolve() else None


def local_hint() -> str:
    """What to do when the local daemon does not answer; distrilab only starts the system's daemon."""
    custom = custom_lxd_dir()
    if custom is None:
        return _LOCAL_HINT
    return (
        f"LXD_DIR={custom} names a daemon directory nothing serves: start that daemon, or unset LXD_DIR "
        f"to use the system's daemon ({DEFAULT_LXD_DIR}; '.ci/setup' or 'python -m modules.lxd_host "
        "ensure' start it), then run 'distrilab up' again (it continues)"
    )
_REMOTE_HINT = "check the host is up, LXD listens on core.https_address and the firewall allows 8443"
