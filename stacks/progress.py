"""Rich rendering of terraform's event stream: one live row per (stage, host), reconciler lines above.

Core code only emits events (stacks/terraform.py); this module is the only place that draws.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from stacks.deploy import Synthesized
from stacks.terraform import Event, PlanResult

STATUS_STYLE = {
    "pending": "dim",
    "unchanged": "dim",
    "running": "yellow",
    "done": "green",
    "failed": "bold red",
}
#: what terraform's apply_* actions are called in the table
VERB = {"create": "creating", "delete": "destroying", "update": "updating", "replace": "replacing"}


@dataclass
class Row:
    stage: str
    host: str
    status: str = "pending"
    action: str = ""
    started: float | None = None
    finished: float | None = None
    last_line: str = ""
    lines: int = 0

    def elapsed(self) -> str:
        if self.started is None:
            return ""
        end = self.finished or time.monotonic()
        return f"{end - self.started:.1f}s"


@dataclass
class ApplyProgress:
    """Context manager: feed it events (`handle`), it keeps a live table up to date."""

    synthesized: Synthesized
    console: Console
    title: str = "apply"
    rows: dict[str, Row] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for address in self.synthesized.resources:  # every resource of the stack, in stage order
            self.row(address)
        self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> ApplyProgress:
        self._live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:  # terraform finished: what it never touched already matched
            for row in self.rows.values():
                if row.status == "pending":
                    row.status = "unchanged"
        self._live.update(self.render())
        self._live.stop()
        if not self.console.is_terminal:
            self.console.print()  # the last render ends without a newline when not on a terminal

    def row(self, address: str) -> Row:
        if address not in self.rows:
            stage, host = self.synthesized.label(address)
            self.rows[address] = Row(stage, host)
        return self.rows[address]

    def handle(self, event: Event) -> None:
        address = event.address
        if event.type == "apply_start" and address:
            row = self.row(address)
            row.status, row.action, row.started = (
                "running",
                VERB.get(event.action or "", event.action or ""),
                time.monotonic(),
            )
        elif event.type == "apply_complete" and address:
            row = self.row(address)
            row.status, row.finished = "done", time.monotonic()
        elif event.type == "apply_errored" and address:
            row = self.row(address)
            row.status, row.finished = "failed", time.monotonic()
        elif event.type == "provision_progress" and address and event.output is not None:
            row = self.row(address)
            row.lines += 1
            row.last_line = event.output
            # terraform's own "Executing: [...]" preamble is noise next to the reconciler's lines
            style = "dim" if event.output.startswith("Executing: ") else "default"
            line = Text.assemble((f"{row.stage}@{row.host} ", "cyan"), (event.output, style))
            self.console.print(line, highlight=False, soft_wrap=True)
        elif event.type == "diagnostic" and event.diagnostic and event.diagnostic.severity == "warning":
            self.console.print(f"[yellow]warning:[/] {event.diagnostic.summary}", highlight=False)
        self._live.update(self.render())

    def render(self) -> Table:
        table = Table(title=f"{self.synthesized.lab.name}: {self.title}", expand=False)
        for column in ("stage", "host", "status", "time", "last output"):
            table.add_column(column, no_wrap=column != "last output", overflow="ellipsis")
        for row in self.rows.values():
            status = f"{row.action} …" if row.status == "running" else row.status
            table.add_row(
                row.stage,
                row.host,
                f"[{STATUS_STYLE.get(row.status, '')}]{status}[/]",
                row.elapsed(),
                escape(row.last_line[-80:]),
            )
        return table


def plan_table(synthesized: Synthesized, plan: PlanResult) -> Table:
    table = Table(title=f"{synthesized.lab.name}: plan")
    for column in ("stage", "host", "action", "reason"):
        table.add_column(column)
    style = {"create": "green", "delete": "red", "replace": "yellow", "update": "yellow"}
    for change in plan.changes:
        stage, host = synthesized.label(change.address)
        table.add_row(stage, host, f"[{style.get(change.action, '')}]{change.action}[/]", change.reason or "")
    return table
