"""Validate a command's --json document against the schema it names (docs/schemas)."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from stacks.json_output import schema_for


def valid_document(text: str, kind: str) -> dict[str, Any]:
    """Parse stdout (all of it must be the one JSON document), check its kind and its schema."""
    doc = json.loads(text)
    assert doc["kind"] == kind, doc.get("kind")
    errors = sorted(Draft202012Validator(schema_for(doc)).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    return doc
