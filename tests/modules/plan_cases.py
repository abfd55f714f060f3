"""pyinfra-style plan fixtures: tests/modules/<module>/<case>.json = {spec, observed, plan | exception}.

`observed` was captured from a real lab (then edited per scenario); `plan` lists [verb, target,
reason] in order. Regenerate a case by running the reconciler's plan() and reviewing the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cdk.errors import DistrilabError
from modules.reconcile import Reconciler

HERE = Path(__file__).parent


def cases(module: str) -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in sorted((HERE / module).glob("*.json"))]


def check_case(reconciler: Reconciler[Any, Any], path: Path) -> None:
    case = json.loads(path.read_text())
    spec = reconciler.load_spec(case["spec"])
    if "exception" in case:
        with pytest.raises(DistrilabError) as err:
            reconciler.plan(spec, case["observed"])
        assert str(err.value) == case["exception"]
        return
    actions = reconciler.plan(spec, case["observed"])
    assert [[a.verb, a.target, a.reason] for a in actions] == case["plan"]
    # the plan is pure: planning twice gives the same actions
    assert reconciler.plan(spec, case["observed"]) == actions


#: set to rewrite the captured fixtures from a real deployment (the e2e tests that observe one)
CAPTURE_ENV = "DISTRILAB_CAPTURE"


def shape(data: Any) -> Any:
    """The structure of JSON data: keys kept, lists by their first item, values by their type."""
    if isinstance(data, dict):
        return {key: shape(value) for key, value in data.items()}
    if isinstance(data, list):
        return [shape(data[0])] if data else []
    return type(data).__name__


def captured(module: str, case: str, real: dict[str, Any]) -> None:
    """Compare what a real deployment gave (`real`: spec, observed, plan; stored as it came, so the
    hashes inside stay true) with the case the unit tests plan from: same structure, once this
    run's random lab name reads as the fixture's. With DISTRILAB_CAPTURE=1 the case is rewritten
    from it first."""
    path = HERE / module / f"{case}.json"
    if os.environ.get(CAPTURE_ENV):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(real, indent=1, sort_keys=True) + "\n")
    fixture = json.loads(path.read_text())
    renamed = json.loads(json.dumps(real).replace(real["spec"]["lab"], fixture["spec"]["lab"]))
    for part in ("spec", "observed"):
        assert shape(fixture[part]) == shape(renamed[part]), (
            f"{path}: its {part} no longer has the shape a real deployment gives; "
            f"re-capture it with {CAPTURE_ENV}=1 and review the diff"
        )
