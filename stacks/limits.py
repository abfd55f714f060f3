"""`up --limit SELECTOR`: the part of a lab that is deployed, kept in `.distrilab/limits/<lab>.json`.

Every later command on the lab (plan, check, inspect, down, ...) works on that part, until an
`up` without `--limit` deploys the whole lab again (and drops the record); `down` drops it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdk.model import Lab
from cdk.selection import limited
from stacks.paths import Paths


def limit_file(paths: Paths, lab: str) -> Path:
    return paths.specs_dir.parent / "limits" / f"{lab}.json"


def read_limit(paths: Paths, lab: str) -> dict[str, Any] | None:
    """{"selector": ..., "nodes": [...]} of the lab's last `up --limit`, or None."""
    path = limit_file(paths, lab)
    return json.loads(path.read_text()) if path.is_file() else None


def save_limit(paths: Paths, lab: str, selector: str, nodes: tuple[str, ...]) -> None:
    path = limit_file(paths, lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"selector": selector, "nodes": list(nodes)}, indent=2) + "\n")


def clear_limit(paths: Paths, lab: str) -> None:
    limit_file(paths, lab).unlink(missing_ok=True)


def deployed_part(paths: Paths, lab: Lab) -> Lab:
    """The lab as its last `up` deployed it: the recorded subset, or the whole lab."""
    record = read_limit(paths, lab.name)
    if record is None:
        return lab
    names = {n.name for n in lab.topology.nodes}
    # nodes the lab file no longer has are simply gone from the part
    return limited(lab, tuple(n for n in record["nodes"] if n in names))
