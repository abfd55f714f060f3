"""Concurrency: `--workers N` for one run, the lab's `lxd.max_workers`, a host's own cap, and this
machine's vCPU count by default; honoured by every reconciler, and no part of any spec."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import cdk.stages
from cdk.pipeline import lab_from_dict, load_lab
from modules.reconcile import WORKERS_ENV, Action, Reconciler, reconciler_for, resolve_workers
from stacks.lab_stack import stage_specs

REPO = Path(__file__).resolve().parents[2]


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert resolve_workers(None) == os.cpu_count()
    assert resolve_workers(6) == 6  # the lab's lxd.max_workers
    assert resolve_workers(6, limit=3) == 3  # the host's own cap
    monkeypatch.setenv(WORKERS_ENV, "12")
    assert resolve_workers(6) == 12  # --workers wins over the lab ...
    assert resolve_workers(6, limit=4) == 4  # ... but not over a host's cap
    monkeypatch.setenv(WORKERS_ENV, "zero")
    assert resolve_workers(5) == 5  # garbage in the environment is ignored


class Sleeper(Reconciler[Any, Any]):
    """The shared executor with actions that only sleep, counting how many run at once."""

    name = "sleeper"

    def __init__(self) -> None:
        self.running = self.peak = 0
        self.lock = threading.Lock()

    def execute_action(self, client: Any, spec: Any, action: Action) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1


@pytest.mark.parametrize("workers", [1, 3])
def test_the_executor_runs_at_most_workers_at_once(workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ENV, str(workers))
    sleeper = Sleeper()
    spec = type("Spec", (), {"max_workers": 8, "workers_limit": None})()
    assert sleeper.execute(None, spec, [Action("sleep", str(i), "test") for i in range(9)]) == []
    assert sleeper.peak == workers


def test_every_reconciler_honours_workers_and_a_hosts_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = load_lab(REPO / "labs" / "alcor-small.yaml")
    specs = stage_specs(lab, cdk.stages.STAGES)
    assert {s.stage.name for s in specs} >= {"images", "nodes", "links", "fabric", "alcor", "controller"}
    monkeypatch.setenv(WORKERS_ENV, "5")
    for s in specs:
        if s.stage.name == "cluster":
            continue  # its phases hold at most two independent steps (modules/lxd_host.py)
        reconciler = reconciler_for(s.stage.module)
        parsed = reconciler.load_spec(s.spec)
        expected = min(5, parsed.max_parallel) if s.stage.name == "alcor" else 5
        assert reconciler.max_workers(parsed) == expected, s.stage.name
        capped = reconciler.load_spec({**s.spec, "workers_limit": 2})
        assert reconciler.max_workers(capped) == 2, s.stage.name


def test_workers_are_no_part_of_the_desired_state(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"name": "wk", "topology": {"kind": "linear"},
            "hosts": [{"name": "local", "kind": "local", "max_workers": 3}]}
    lab = lab_from_dict(data)
    before = {s.resource_id: s.hash for s in stage_specs(lab, cdk.stages.STAGES)}
    assert all(s.spec["workers_limit"] == 3 and s.spec["max_workers"] is None
               for s in stage_specs(lab, cdk.stages.STAGES))
    monkeypatch.setenv(WORKERS_ENV, "7")  # what `up --workers 7` sets for its terraform run
    assert {s.resource_id: s.hash for s in stage_specs(lab, cdk.stages.STAGES)} == before
