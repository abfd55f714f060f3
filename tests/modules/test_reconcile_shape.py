"""The shared shape of every reconciler's execution: phases run in order, each as one batch, and
an action whose `after` names a failed target is skipped (and so are those that need it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from modules.reconcile import Action, Reconciler


class Recorder(Reconciler[Any, Any]):
    name = "recorder"

    def __init__(self, failing: set[str]) -> None:
        self.failing, self.ran, self.batches = failing, [], []

    def execute_action(self, client: Any, spec: Any, action: Action) -> None:
        self.ran.append(action.target)
        if action.target in self.failing:
            raise RuntimeError(f"{action.target} broke")

    def execute_batch(self, client: Any, spec: Any, batch: Sequence[Action],
                      report: Callable[[Action, str | None], None], workers: int | None = None) -> None:
        self.batches.append(sorted(a.target for a in batch))
        super().execute_batch(client, spec, batch, report, 1)


def test_dependants_of_a_failed_action_are_skipped_and_the_rest_runs() -> None:
    actions = [
        Action("create", "net", "missing", 0),
        Action("create", "tpl", "missing", 0),
        Action("create", "node-a", "missing", 1, after=("net", "tpl")),
        Action("create", "node-b", "missing", 1, after=("tpl",)),
        Action("start", "svc", "missing", 2, after=("node-a",)),  # needs a skipped one: skipped too
        Action("delete", "old", "gone", 2),
    ]
    recorder = Recorder(failing={"net"})
    seen: list[tuple[str, bool]] = []
    failures = recorder.execute(None, object(), actions,
                                lambda a, done, total, err: seen.append((a.target, err is None)))
    assert failures == [
        ("create net (missing)", "net broke"),
        ("create node-a (missing)", "skipped: needs net, which failed"),
        ("start svc (missing)", "skipped: needs node-a, which failed"),
    ]
    assert sorted(recorder.ran) == ["net", "node-b", "old", "tpl"]
    assert recorder.batches == [["net", "tpl"], ["node-b"], ["old"]]  # a phase is one batch
    assert len(seen) == len(actions) and dict(seen)["node-b"] and not dict(seen)["svc"]
