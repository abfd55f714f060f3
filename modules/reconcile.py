"""The shape every apply-time reconciler shares: observe -> plan (pure) -> execute, in stages.

A reconciler module subclasses `Reconciler` and ends with `if __name__ == "__main__": sys.exit(X().main())`.
Terraform's provisioners call `python -m modules.<name> apply|destroy --spec FILE --generation ID`.

Generations: a stage resource is replaced (create_before_destroy) when its desired state changes or
after a failed apply. Measured with terraform 1.11, the replaced (deposed) or tainted object is then
destroyed without running its destroy-time provisioner, so the new resource's apply must converge
the stage by itself: reconcilers delete the owned objects their spec no longer lists. Each apply
still records its resource id as the stage's current generation, and a destroy whose generation is
not the current one is superseded and does nothing, so no other path (a manual `terraform destroy
-target`, a future terraform that does run them) can tear down a stage a newer apply owns.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from cdk.errors import ERROR_LINE_PREFIX, DistrilabError, ReconcileError

log = logging.getLogger(__name__)

SpecT = TypeVar("SpecT")
ObservedT = TypeVar("ObservedT")

#: default state directory for generation records (overridden by --state-dir)
DEFAULT_STATE_DIR = Path(".distrilab/state")
#: `distrilab up/down --workers N` for this run (terraform passes its environment to provisioners);
#: an operational knob, so it is no part of any spec (changing it re-runs no stage)
WORKERS_ENV = "DISTRILAB_WORKERS"


def resolve_workers(configured: int | None, limit: int | None = None) -> int:
    """Parallel actions for one stage on one host: `--workers N` for this run, else what the lab
    file sets (`lxd.max_workers`), else this machine's vCPU count (the reconcilers run here);
    never above the host's own `max_workers` in the lab file."""
    given = os.environ.get(WORKERS_ENV, "")
    wanted = int(given) if given.isdigit() and int(given) > 0 else configured or os.cpu_count() or 1
    return max(1, min(wanted, limit) if limit else wanted)


def workers_fields(data: dict[str, Any]) -> dict[str, int | None]:
    """`max_workers` and `workers_limit` of a stage spec (cdk/stages/__init__.py: common)."""
    return {name: int(data[name]) if data.get(name) else None for name in ("max_workers", "workers_limit")}


@dataclass(frozen=True)
class Action:
    """One change: `verb` on `target` because of `reason`; `phase` orders execution (lower first)."""

    verb: str
    target: str
    reason: str
    phase: int = 0
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    #: targets of actions in earlier phases this one needs: when one of them fails, this action
    #: is skipped (and so are the actions that need it)
    after: tuple[str, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        return f"{self.verb} {self.target} ({self.reason})"


ProgressCallback = Callable[[Action, int, int, "Exception | None"], None]


class Reconciler(Generic[SpecT, ObservedT]):
    """Subclasses implement the five methods below; `main` does the rest."""

    #: short module name, printed as "[name]" on every line
    name: str = "reconciler"

    def load_spec(self, data: dict[str, Any]) -> SpecT:
        """Parse the desired-state JSON (raise DistrilabError on a bad spec)."""
        raise NotImplementedError

    def empty_spec(self, spec: SpecT) -> SpecT:
        """The same identity (lab, host) with nothing desired: what `destroy` converges to."""
        raise NotImplementedError

    def connect(self, spec: SpecT) -> Any:
        """A client for the host the spec targets (pylxd.Client for LXD stages)."""
        raise NotImplementedError

    def observe(self, client: Any, spec: SpecT) -> ObservedT:
        """Read the real state. Reads only."""
        raise NotImplementedError

    def plan(self, spec: SpecT, observed: ObservedT) -> list[Action]:
        """Pure: the actions that converge `observed` to `spec`; [] when converged."""
        raise NotImplementedError

    def execute_action(self, client: Any, spec: SpecT, action: Action) -> None:
        """Carry out one action (called from worker threads)."""
        raise NotImplementedError

    # -------------------------------------------------------------- shared machinery

    def identity(self, spec: SpecT) -> tuple[str, str]:
        """(lab, host) of a spec; specs carry `lab` and `host` attributes by convention."""
        return getattr(spec, "lab"), getattr(spec, "host")  # noqa: B009

    def max_workers(self, spec: SpecT) -> int:
        return resolve_workers(getattr(spec, "max_workers", None), getattr(spec, "workers_limit", None))

    def execute(
        self,
        client: Any,
        spec: SpecT,
        actions: Sequence[Action],
        progress: ProgressCallback | None = None,
        workers: int | None = None,
    ) -> list[tuple[str, str]]:
        """Run actions phase by phase, each phase as one batch (`execute_batch`); an action whose
        `after` names a failed target is skipped, not run. Collects every failure, cancels nothing."""
        failures: list[tuple[str, str]] = []
        failed: set[str] = set()
        total, done = len(actions), 0

        def report(action: Action, err: str | None) -> None:  # as each action ends: live progress
            nonlocal done
            done += 1
            if err is not None:
                failed.add(action.target)
                failures.append((str(action), err))
                print(f"[{self.name}] FAILED {action}: {err} ({done}/{total})", flush=True)
            else:
                print(f"[{self.name}] {action} ({done}/{total})", flush=True)
            if progress:
                progress(action, done, total, RuntimeError(err) if err is not None else None)

        for phase in sorted({a.phase for a in actions}):
            runnable = []
            for action in (a for a in actions if a.phase == phase):
                blocked = sorted(set(action.after) & failed)
                if blocked:
                    report(action, f"skipped: needs {', '.join(blocked)}, which failed")
                else:
                    runnable.append(action)
            if runnable:
                self.execute_batch(client, spec, runnable, report, workers)
        return failures

    def execute_batch(
        self,
        client: Any,
        spec: SpecT,
        batch: Sequence[Action],
        report: Callable[[Action, str | None], None],
        workers: int | None = None,
    ) -> None:
        """One phase's actions on a bounded pool (`workers`, else max_workers), each reported as
        it ends (its error, or None). A stage that does a whole phase in one step (links: one
        `ip -batch`) overrides this."""
        size = max(1, min(workers or self.max_workers(spec), len(batch)))
        with ThreadPoolExecutor(max_workers=size) as pool:
            futures = {pool.submit(self.execute_action, client, spec, a): a for a in batch}
            for fut in as_completed(futures):
                err = fut.exception()
                report(futures[fut], None if err is None else _describe(err))

    def converge(self, spec: SpecT, dry_run: bool = False, progress: ProgressCallback | None = None) -> int:
        """observe -> plan -> execute; returns the number of actions (raises ReconcileError)."""
        client = self.connect(spec)
        observed = self.observe(client, spec)
        actions = self.plan(spec, observed)
        if not actions:
            print(f"[{self.name}] no changes", flush=True)
            return 0
        print(f"[{self.name}] plan: {len(actions)} action(s)" + (" (dry run)" if dry_run else ""), flush=True)
        if dry_run:
            for a in actions:
                print(f"[{self.name}]   {a}", flush=True)
            return len(actions)
        started = time.monotonic()
        failures = self.execute(client, spec, actions, progress)
        if failures:
            raise ReconcileError(self.name, failures, hint=self.failure_hint(failures))
        elapsed = time.monotonic() - started
        print(f"[{self.name}] done: {len(actions)} action(s) in {elapsed:.1f}s", flush=True)
        return len(actions)

    def failure_hint(self, failures: list[tuple[str, str]]) -> str | None:
        return "fix the cause and run 'distrilab up' again (it continues), or 'distrilab down'"

    # -------------------------------------------------------------- generations

    def _generation_file(self, state_dir: Path, spec: SpecT) -> Path:
        lab, host = self.identity(spec)
        return state_dir / lab / f"{self.name}@{host}.generation"

    def record_generation(self, state_dir: Path, spec: SpecT, generation: str) -> None:
        path = self._generation_file(state_dir, spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(generation + "\n")

    def superseded(self, state_dir: Path, spec: SpecT, generation: str | None) -> bool:
        path = self._generation_file(state_dir, spec)
        if generation is None or not path.exists():
            return False
        return path.read_text().strip() != generation

    # -------------------------------------------------------------- command line

    def main(self, argv: Sequence[str] | None = None) -> int:
        """`apply|destroy --spec FILE [--dry-run] [--generation ID] [--state-dir DIR]`.

        Exit codes: 0 converged, 1 some actions failed, 2 bad spec or usage.
        """
        parser = argparse.ArgumentParser(prog=f"python -m modules.{self.name}")
        parser.add_argument("command", choices=["apply", "destroy"])
        parser.add_argument("--spec", required=True, type=Path, help="desired-state JSON file")
        parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        parser.add_argument("--generation", help="id of the terraform resource running this")
        parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO, format=f"[{self.name}] %(message)s")
        try:
            spec = self.load_spec(json.loads(args.spec.read_text()))
        except (OSError, ValueError) as err:
            print(f"[{self.name}] cannot read spec {args.spec}: {err}", file=sys.stderr)
            return 2
        except DistrilabError as err:
            print(f"[{self.name}] bad spec {args.spec}: {err}", file=sys.stderr)
            return 2
        try:
            if args.command == "apply":
                if args.generation and not args.dry_run:
                    self.record_generation(args.state_dir, spec, args.generation)
                self.converge(spec, dry_run=args.dry_run)
            else:
                if self.superseded(args.state_dir, spec, args.generation):
                    print(f"[{self.name}] destroy of generation {args.generation}: superseded, nothing to do")
                    return 0
                self.converge(self.empty_spec(spec), dry_run=args.dry_run)
        except DistrilabError as err:
            report_error(err)
            return 1
        return 0


def report_error(err: DistrilabError) -> None:
    """The reconciler's last words, marked so `distrilab up/down` shows them as the error."""
    print(f"{ERROR_LINE_PREFIX}{err}", file=sys.stderr, flush=True)


def _describe(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text if len(text) < 2000 else text[:2000] + " ..."


def reconciler_for(module_name: str) -> Reconciler[Any, Any]:
    """The Reconciler a `modules.<name>` module defines (the one its `__main__` runs)."""
    import importlib

    module = importlib.import_module(module_name)
    classes = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, Reconciler) and v is not Reconciler
        and v.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise LookupError(f"{module_name} defines {len(classes)} reconcilers, expected exactly one")
    return classes[0]()
