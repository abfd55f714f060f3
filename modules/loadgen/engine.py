"""The open-loop scheduler: sends a plan's requests at the scenario's rate and measures them.

Open loop (no coordinated omission): when an operation becomes ready (all its parents succeeded)
it is given a scheduled send time from its pacer -- `max(now, previous slot + 1/rate)`, one pacer
per step that has its own rate, one shared pacer for the rest. Latency is measured from that
scheduled time to the last byte of the answer, so time spent waiting for a free connection
(concurrency bound) or behind a stalled server counts, exactly as a user arriving at that moment
would see it. A failed parent marks its whole subtree skipped. With `order: phased` a step's
operations are held until every operation of the steps before it is finished (answered or
skipped), Alcor's own pseudo controller's shape; each step is then paced from its release.
The run stops by itself: nothing is dispatched after `max_duration` or after `max_requests`
sends; requests in flight then finish within their own request timeout. Unsent operations are
reported as `not_sent`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from modules.loadgen.http import Endpoint, HttpClient, RequestError, Response
from modules.loadgen.plan import Plan, PortRef
from modules.loadgen.scenario import STEP_ORDER, Scenario
from modules.loadgen.stats import StepStats

log = logging.getLogger(__name__)

PingFn = Callable[[PortRef, PortRef], bool]

_PENDING, _QUEUED, _SENT, _SKIPPED = 0, 1, 2, 3


@dataclass(frozen=True)
class Progress:
    """Sent once a second to the caller's progress callback."""

    elapsed: float
    planned: int
    sent: int
    done: int
    errors: int
    skipped: int


ProgressFn = Callable[[Progress], None]


@dataclass
class RunResult:
    steps: dict[str, StepStats]
    duration_s: float
    stopped_by: str  # "completed" | "max_duration" | "max_requests"


def classify(response: Response, expect_key: str | None) -> tuple[str | None, str]:
    """Error class of an HTTP answer (None: success) and a short detail for the report."""
    status = response.status
    if 200 <= status < 300:
        if expect_key is None:
            return None, ""
        # Fast path for Alcor's own layout, `{"<key>":{...`: the key first with an object value
        # (bodies are complete: they are framed by Content-Length or chunking).
        if response.body.startswith(b'{"' + expect_key.encode() + b'":{'):
            return None, ""
        try:
            doc = json.loads(response.body)
        except ValueError:
            return "bad_body", f"status {status}, body is not JSON: {response.body[:120]!r}"
        # Alcor's pseudo-controller counts success by the resource key; a null value is how
        # Alcor says "not found" on reads, so it is not a success either.
        if not isinstance(doc, dict) or doc.get(expect_key) is None:
            return "bad_body", f"status {status}, no '{expect_key}' in {response.body[:120]!r}"
        return None, ""
    detail = f"status {status}: {_message(response.body)}"
    if 400 <= status < 500:
        return "http_4xx", detail
    if status >= 500:
        return "http_5xx", detail
    return "bad_body", detail


def _message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:160].decode(errors="replace")
    if isinstance(doc, dict) and "message" in doc:
        return str(doc.get("message"))[:160]
    return body[:160].decode(errors="replace")


class _Run:
    def __init__(
        self,
        scenario: Scenario,
        plan: Plan,
        endpoints: Mapping[str, Endpoint],
        ping: PingFn | None,
        progress: ProgressFn | None,
    ):
        self.scenario = scenario
        self.ops = plan.operations
        self.truncated = plan.truncated  # the plan itself was cut at max_requests
        self.endpoints = endpoints
        self.ping = ping
        self.progress = progress
        self.client = HttpClient(scenario.connect_timeout, scenario.request_timeout)
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.step] = counts.get(op.step, 0) + 1
        self.stats = {s: StepStats(s, counts.get(s, 0)) for s in scenario.step_names}
        self.state = bytearray(len(self.ops))
        self.waiting = [len(op.parents) for op in self.ops]
        # One FIFO per pacer: a pacer's slots only grow, so each queue is already in slot order
        # (cheaper than one heap when a finished subnet releases 100k ports at once).
        self.queues: dict[str | None, deque[tuple[float, int]]] = {}
        self.last_slot: dict[str | None, float] = {}
        self.interval: dict[str, tuple[str | None, float]] = {}
        for spec in scenario.steps:
            rate = spec.rate or scenario.rate
            self.interval[spec.name] = (spec.name if spec.rate else None, 1.0 / rate)
        self.inflight = 0
        self.sent = 0
        self.done = 0
        self.errors = 0
        self.skipped = 0
        self._waiter: asyncio.Future[None] | None = None
        # phased order: the steps in order, how many of each are unfinished, and the operations
        # that became ready before their step's turn
        self.phases = [s for s in STEP_ORDER if counts.get(s)] if scenario.order == "phased" else []
        self.phase = 0
        self.unfinished = dict(counts)
        self.held: dict[str, list[int]] = {}
        self.loop = asyncio.get_running_loop()
        # Timestamps from time.monotonic, not loop.time(): uvloop's loop clock ticks in whole
        # milliseconds, which would quantize every latency.
        self.clock = time.monotonic
        self.t0 = self.clock()
        self.deadline = self.t0 + scenario.max_duration
        self.due: deque[tuple[float, int]] = deque()  # slot has come, waiting for a worker
        self.idle: deque[asyncio.Future[None]] = deque()  # workers waiting for work
        self.dispatching = True

    # scheduling
    def make_ready(self, idx: int, now: float) -> None:
        step = self.ops[idx].step
        if self.phases and self.phases.index(step) > self.phase:
            self.state[idx] = _QUEUED  # ready; released when its step's turn comes
            self.held.setdefault(step, []).append(idx)
            return
        self._queue(idx, now)

    def _finished(self, step: str, now: float) -> None:
        """One operation of `step` answered or skipped; in phased order, open the next steps
        whose predecessors are all finished."""
        self.unfinished[step] -= 1
        phases = self.phases
        while phases and self.phase < len(phases) - 1 and not self.unfinished[phases[self.phase]]:
            self.phase += 1
            for idx in self.held.pop(self.phases[self.phase], []):
                self._queue(idx, now)

    def _queue(self, idx: int, now: float) -> None:
        key, interval = self.interval[self.ops[idx].step]
        slot = max(now, self.last_slot.get(key, float("-inf")) + interval)
        self.last_slot[key] = slot
        self.state[idx] = _QUEUED
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = deque()
        queue.append((slot, idx))
        self._wake()

    def _earliest(self) -> deque[tuple[float, int]] | None:
        best = None
        for queue in self.queues.values():
            if queue and (best is None or queue[0][0] < best[0][0]):
                best = queue
        return best

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, until: float | None) -> None:
        self._waiter = self.loop.create_future()
        handle = None
        if until is not None:
            handle = self.loop.call_later(max(0.0, until - self.clock()), self._wake)
        try:
            await self._waiter
        finally:
            if handle is not None:
                handle.cancel()
            self._waiter = None

    async def run(self) -> RunResult:
        now = self.clock()
        for op in self.ops:
            if not op.parents:
                self.make_ready(op.index, now)
        ticker = asyncio.create_task(self._tick()) if self.progress else None
        # `concurrency` workers take due operations in slot order; an operation that waits for a
        # free worker keeps its slot, so that wait is part of its measured latency.
        workers = [asyncio.create_task(self._worker()) for _ in range(self.scenario.concurrency)]
        stopped_by = await self._dispatch()
        self.dispatching = False
        while self.idle:
            _release(self.idle.popleft())
        await asyncio.gather(*workers, return_exceptions=True)
        duration = self.clock() - self.t0
        if ticker is not None:
            ticker.cancel()
            self._report_progress()
        await self.client.close()
        unsent = 0
        for op in self.ops:
            if self.state[op.index] in (_PENDING, _QUEUED):
                self.stats[op.step].not_sent += 1
                unsent += 1
        if stopped_by == "max_requests" and not unsent and not self.truncated:
            stopped_by = "completed"  # the bound was reached exactly by the last operation
        return RunResult(self.stats, duration, stopped_by)

    async def _dispatch(self) -> str:
        """Move operations whose slot has come to the workers; returns why it stopped."""
        released = 0
        limit = self.scenario.max_requests
        while True:
            if released >= limit:
                return "max_requests"
            now = self.clock()
            if now >= self.deadline:
                return "max_duration"
            queue = self._earliest()
            if queue is None:
                if self.inflight == 0 and not self.due:
                    return "completed"
                await self._sleep(self.deadline)
                continue
            if queue[0][0] > now:
                await self._sleep(min(queue[0][0], self.deadline))
                continue
            while queue and queue[0][0] <= now and released < limit:
                self.due.append(queue.popleft())
                released += 1
                if self.idle:
                    _release(self.idle.popleft())

    async def _worker(self) -> None:
        due, clock = self.due, self.clock
        while True:
            if due:
                slot, idx = due.popleft()
                now = clock()
                if now >= self.deadline:
                    continue  # past the run's time bound: stays unsent
                self.inflight += 1
                self.sent += 1
                self.state[idx] = _SENT
                self.stats[self.ops[idx].step].record_sent(now - self.t0, now - slot)
                await self._execute(idx, slot)
                continue
            if not self.dispatching:
                return
            waiter = self.loop.create_future()
            self.idle.append(waiter)
            await waiter

    async def _execute(self, idx: int, slot: float) -> None:
        op = self.ops[idx]
        latency: float | None = None
        detail = ""
        try:
            if op.ping is not None:
                ok = await self.loop.run_in_executor(None, self._ping, op.ping)
                latency = self.clock() - slot
                error = None if ok else "ping_failed"
                detail = "" if ok else f"{op.ping[0].ip} -> {op.ping[1].ip}"
            else:
                assert op.call is not None
                call = op.call()
                response = await self.client.request(
                    self.endpoints[call.service], call.method, call.path, call.body
                )
                latency = self.clock() - slot
                error, detail = classify(response, call.expect_key)
        except RequestError as exc:
            error, detail = exc.kind, str(exc)
        except Exception as exc:  # a bug or an odd socket error must not end the run
            log.debug("request %d failed", idx, exc_info=True)
            error, detail = "connection_error", f"{type(exc).__name__}: {exc}"
        finally:
            self.inflight -= 1
        now = self.clock()
        self.stats[op.step].record_done(now - self.t0, latency, error, detail)
        self.done += 1
        if error is None:
            for child in op.children:
                self.waiting[child] -= 1
                if self.waiting[child] == 0 and self.state[child] == _PENDING:
                    self.make_ready(child, now)
        else:
            self.errors += 1
            self._skip_subtree(op.children)
        self._finished(op.step, now)
        if self.inflight == 0:
            self._wake()  # the dispatcher may be waiting for the last answer to finish the run

    def _ping(self, pair: tuple[PortRef, PortRef]) -> bool:
        assert self.ping is not None
        return bool(self.ping(*pair))

    def _skip_subtree(self, children: list[int]) -> None:
        stack = list(children)
        while stack:
            idx = stack.pop()
            if self.state[idx] != _PENDING:
                continue
            self.state[idx] = _SKIPPED
            self.skipped += 1
            self.stats[self.ops[idx].step].skipped += 1
            self._finished(self.ops[idx].step, self.clock())
            stack.extend(self.ops[idx].children)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._report_progress()

    def _report_progress(self) -> None:
        if self.progress is None:
            return
        self.progress(
            Progress(
                elapsed=self.clock() - self.t0,
                planned=len(self.ops),
                sent=self.sent,
                done=self.done,
                errors=self.errors,
                skipped=self.skipped,
            )
        )


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def execute(
    scenario: Scenario,
    plan: Plan,
    endpoints: Mapping[str, Endpoint],
    ping: PingFn | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Run a plan against resolved endpoints; never raises for request failures."""
    run = _Run(scenario, plan, endpoints, ping, progress)
    result = await run.run()
    ordered = {s: result.steps[s] for s in STEP_ORDER if s in result.steps}
    return RunResult(ordered, result.duration_s, result.stopped_by)
