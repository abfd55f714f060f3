"""Helpers shared by the lab-loading tests: fixed host routes, and a guard that nothing is written."""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdk.host_routes import HostRoute

REPO = Path(__file__).resolve().parents[2]
ERRORS_DIR = REPO / "tests" / "cdk" / "errors"
LABS_DIR = REPO / "labs"

#: what this kind of machine looks like: an uplink, a resolver, and another lab's management bridge
FAKE_HOST_ROUTES = (
    HostRoute("192.0.2.0/24", "route dev eth0"),
    HostRoute("10.255.255.53/32", "resolver in /etc/resolv.conf"),
    HostRoute("10.99.0.0/16", "route dev dlbr-other", lab="other"),
)


@contextlib.contextmanager
def read_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if the code under it writes a file, makes a directory or runs a command."""

    real_open = builtins.open

    def guarded_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"lab loading must not write files (opened {file!r} with {mode!r})")
        return real_open(file, mode, *args, **kwargs)

    def forbidden(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"lab loading must not create anything or run commands: {args!r}")

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", guarded_open)
        patch.setattr(io, "open", guarded_open)
        for name in ("mkdir", "makedirs", "remove", "unlink", "rename", "replace", "symlink"):
            patch.setattr(os, name, forbidden)
        patch.setattr(subprocess, "Popen", forbidden)
        patch.setattr(subprocess, "run", forbidden)
        yield
