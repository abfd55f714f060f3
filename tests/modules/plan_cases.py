"""pyinfra-style plan fixtures: tests/modules/<module>/<case>.json = {spec, observed, plan | exception}.

`observed` was captured from a real lab (then edited per scenario); `plan` lists [verb, target,
reason] in order. Regenerate a case by running the reconciler's plan() and reviewing the diff.
"""

from __future__ import annotations

import json
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
