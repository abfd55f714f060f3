"""The address pools labs chose for themselves, kept in `.distrilab/pools/<lab>.json`.

A lab whose file leaves a pool out takes a free one when it comes up (cdk/pipeline.py:
choose_pools); the record keeps that choice for every later command on the lab (plan, check,
re-apply, down) and steers other labs of this checkout away from it even before its bridge
exists (two `up`s at once). `up` claims under a lock; `down` forgets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cdk.model import Lab
from modules.file_lock import locked, replace_text
from stacks.paths import Paths


def records_dir(paths: Paths) -> Path:
    return paths.specs_dir.parent / "pools"


def read_records(paths: Paths) -> dict[str, dict[str, str]]:
    """lab -> the pools it chose (unreadable records are skipped: they only steer choices)."""
    records = {}
    for path in sorted(records_dir(paths).glob("*.json")):
        try:
            pools = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(pools, dict):
            records[path.stem] = {str(k): str(v) for k, v in pools.items()}
    return records


@contextmanager
def claiming(paths: Paths) -> Iterator[None]:
    """One lab at a time reads the records, chooses and writes its own."""
    with locked(records_dir(paths) / "records"):
        yield


def record(paths: Paths, lab: Lab) -> None:
    """Keep the pools `lab` chose (none chosen: no record)."""
    path = records_dir(paths) / f"{lab.name}.json"
    chosen = {name: lab.addressing.pools[name] for name in lab.addressing.chosen}
    if not chosen:
        path.unlink(missing_ok=True)
        return
    text = json.dumps(chosen, indent=2, sort_keys=True) + "\n"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_text(path, text, mode=0o644)


def forget(paths: Paths, lab: str) -> None:
    (records_dir(paths) / f"{lab}.json").unlink(missing_ok=True)


def forget_new_claim(paths: Paths, lab: str, claimed_before: set[str]) -> None:
    """After a refused deploy: drop the claim that deploy made (`claimed_before` is the set of
    labs with a record before it), never the one of a lab that was already up."""
    if lab not in claimed_before:
        forget(paths, lab)
