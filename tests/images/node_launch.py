"""Launch a built image as one LXD container for the image e2e tests, and clean up after.

Each container is named `dl-<lab>-<node>` and labelled `user.distrilab.lab=<lab>`,
`user.distrilab.owner=tests.images`. An image is imported (without alias) only if LXD does not
have its fingerprint yet, and deleted afterwards only if this helper imported it and nobody
gave it an alias meanwhile.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from images.builder import BuiltImage, fingerprint, pack

OWNER = "tests.images"
POOL = os.environ.get("DISTRILAB_TEST_POOL", "distrilab")


def unique_lab(prefix: str) -> str:
    """A lab name of at most 20 characters, unique enough for parallel test runs."""
    return f"{prefix}{secrets.token_hex(3)}"[:20]


def lxc(*args: str, check: bool = True, timeout: float = 300, stdin: str | None = None) -> str:
    proc = subprocess.run(["lxc", *args], capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"lxc {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def sh(container: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `command` with /bin/sh inside the container (never raises on a non-zero exit)."""
    return subprocess.run(["lxc", "exec", container, "--", "sh", "-c", command],
                          capture_output=True, text=True, timeout=timeout)


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 60, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for: {what}")


def import_seconds(image: BuiltImage) -> tuple[str, bool, float]:
    """(fingerprint, imported by us, seconds the import took; 0 when LXD had it already)."""
    tarball = pack(image)
    fp = fingerprint(tarball)
    if lxc("image", "info", fp, check=False).strip():
        return fp, False, 0.0
    started = time.monotonic()
    lxc("image", "import", str(tarball), timeout=600)
    return fp, True, time.monotonic() - started


def drop_image(fp: str) -> None:
    """Delete an image this helper imported, unless someone aliased it meanwhile."""
    listing = json.loads(lxc("image", "list", fp, "--format", "json", check=False) or "[]")
    if listing and not listing[0].get("aliases"):
        lxc("image", "delete", fp, check=False)


@contextmanager
def launched(
    image: BuiltImage, lab: str, node: str, files: Mapping[str, str | Path] | None = None
) -> Iterator[str]:
    """A running container of `image` with /dev/net/tun (OVS netdev ports need it).

    `files` maps a path in the container to text or a host file, written before the first boot.
    """
    fp, imported, _ = import_seconds(image)
    name = f"dl-{lab}-{node}"
    lxc("delete", "--force", name, check=False)  # a leftover of an interrupted run
    try:
        lxc("init", fp, name, "-s", POOL, "-c", f"user.distrilab.lab={lab}",
            "-c", f"user.distrilab.owner={OWNER}")
        lxc("config", "device", "add", name, "tun", "unix-char", "source=/dev/net/tun", "path=/dev/net/tun")
        for dest, content in (files or {}).items():
            if isinstance(content, Path):
                lxc("file", "push", str(content), f"{name}{dest}", "--create-dirs")
            else:
                lxc("file", "push", "-", f"{name}{dest}", "--create-dirs", stdin=content)
        lxc("start", name)
        yield name
    finally:
        lxc("delete", "--force", name, check=False)
        if imported:
            drop_image(fp)
