"""A lab's credentials, kept per lab outside the repository, 0600 in a 0700 directory.

    ~/.config/distrilab/labs/<lab>/      ($DISTRILAB_SECRETS overrides ~/.config/distrilab/labs)
        id_ed25519, id_ed25519.pub       ssh key for the lab's ssh hosts (unless the lab names one)
        known_hosts                      the hosts' ssh keys, recorded on first contact
        lxd/client.crt, lxd/client.key   the lab's LXD client certificate (trusted by its cluster)
        lxd/servers/<host>.crt           the cluster's certificate, pinned at bootstrap
        capacities.json                  nodes each host holds, read by `up` (hosts without capacity)

Terraform state and logs only ever hold these paths, never their contents. Nothing here is a
password: hosts are reached with keys, the cluster with the client certificate.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from modules.file_lock import locked

KEY_NAME = "id_ed25519"


def secrets_root() -> Path:
    env = os.environ.get("DISTRILAB_SECRETS")
    return Path(env) if env else Path.home() / ".config" / "distrilab" / "labs"


def lab_dir(lab: str) -> Path:
    path = secrets_root() / lab
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def ssh_key(lab: str, given: str | None = None) -> Path:
    """The private key to reach the lab's hosts: the lab's `ssh_key`, else one made for the lab."""
    if given:
        return Path(given)
    key = lab_dir(lab) / KEY_NAME
    if key.is_file():
        return key
    with locked(key):  # stages of several hosts may ask first at once; one makes the key
        if not key.is_file():
            new = key.with_name(f".{KEY_NAME}.tmp")
            new.unlink(missing_ok=True)
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"distrilab lab {lab}", "-f", str(new)],
                check=True, capture_output=True,
            )
            Path(f"{new}.pub").replace(f"{key}.pub")
            new.replace(key)  # last: the private key's presence means the pair is whole
    return key


def public_key(lab: str, given: str | None = None) -> str:
    key = ssh_key(lab, given)
    pub = Path(f"{key}.pub")
    if pub.is_file():
        return pub.read_text().strip()
    return subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True,
                          check=True).stdout.strip()


def known_hosts(lab: str) -> Path:
    path = lab_dir(lab) / "known_hosts"
    if not path.exists():
        path.touch(mode=0o600)
    return path


def lxd_dir(lab: str) -> Path:
    path = lab_dir(lab) / "lxd"
    path.mkdir(exist_ok=True, mode=0o700)
    return path


def read_capacities(lab: str) -> dict[str, int]:
    """What `up` read the lab's hosts hold ({} before the first `up`; creates nothing)."""
    path = secrets_root() / lab / "capacities.json"
    return {str(k): int(v) for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}


def save_capacities(lab: str, capacities: dict[str, int]) -> None:
    path = lab_dir(lab) / "capacities.json"
    path.write_text(json.dumps(dict(sorted(capacities.items())), indent=2) + "\n")
    path.chmod(0o600)
