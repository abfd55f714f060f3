"""`distrilab hosts LAB`: the lab's ssh hosts before an `up`: the public key to authorize on
them, and the pre-flight (reachable, known host key, key accepted, enough capacity) that `up`
runs before creating anything."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from stacks.loading import load

console = Console()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("hosts", help="the key to authorize on a lab's ssh hosts, and their pre-flight",
                              description=__doc__)
    p.add_argument("lab", type=Path, help="lab file")
    p.set_defaults(func=hosts)


def hosts(args: argparse.Namespace) -> int:
    from modules import lab_secrets
    from modules.host_preflight import preflight

    lab = load(args.lab)
    remote = [h for h in lab.hosts if h.kind == "ssh"]
    if not remote:
        console.print(f"lab {lab.name} has no ssh hosts")
        return 0
    for key in sorted({h.ssh_key or "" for h in remote}):
        path = lab_secrets.ssh_key(lab.name, key or None)
        console.print(f"authorize on {', '.join(h.name for h in remote if (h.ssh_key or '') == key)} "
                      f"(root's ~/.ssh/authorized_keys, or ssh_user's): {path}.pub", highlight=False)
        console.print(lab_secrets.public_key(lab.name, key or None), highlight=False, soft_wrap=True)
    preflight(lab)
    console.print(f"[green]ok[/] {len(remote)} ssh host(s) ready: reachable, host keys known "
                  f"({lab_secrets.known_hosts(lab.name)}), logged in, capacity enough")
    return 0
