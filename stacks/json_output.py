"""JSON on stdout for every command that reports: one envelope, one documented schema per command.

Each document starts with `kind` ("distrilab-<command>") and `version` (bumped on an incompatible
change), the convention the load generator's report.json already follows. The schemas are JSON
Schema files under docs/schemas/<kind>.v<version>.json; the tests validate every command's output
against them. Logs and progress go to stderr, so `distrilab X --json | jq` always parses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stacks.paths import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "docs" / "schemas"
#: command -> the version of its document (and of the schema file that describes it)
VERSIONS = {
    "validate": 1,
    "plan": 1,
    "inspect": 1,
    "graph": 1,
    "check": 1,
    "image-list": 1,
    "doctor": 1,
    "load-report": 1,  # written by modules/loadgen/report.py, which sets kind and version itself
}


def document(command: str, body: dict[str, Any]) -> dict[str, Any]:
    """`body` under the command's envelope (kind and version first, for a reader's eye)."""
    return {"kind": f"distrilab-{command}", "version": VERSIONS[command], **body}


def emit(command: str, body: dict[str, Any]) -> None:
    print(json.dumps(document(command, body), indent=2))


def schema_file(kind: str, version: int) -> Path:
    return SCHEMA_DIR / f"{kind}.v{version}.json"


def schema_for(doc: dict[str, Any]) -> dict[str, Any]:
    """The schema a document names through its kind and version."""
    return json.loads(schema_file(str(doc["kind"]), int(doc["version"])).read_text())
