"""One writer at a time for a file that several threads or distrilab processes update.

Stages for different hosts run in parallel (terraform runs one process per resource, and the
pre-flight checks hosts in threads); files they share (the lab's known_hosts, its client
certificate) are written under this lock and replaced in one rename."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: flock is per open file description, so threads of one process need their own lock too
_THREADS = threading.Lock()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold `path`.lock exclusively (threads and processes) for the body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _THREADS, open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def replace_text(path: Path, text: str, mode: int = 0o600) -> None:
    """Write `path` whole in one rename: a reader sees the old or the new file, never half."""
    fresh = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fresh.write_text(text)
    fresh.chmod(mode)
    fresh.replace(path)
