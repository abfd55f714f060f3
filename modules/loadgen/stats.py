"""What a run measured, per step: counts, error classes, HDR latency histogram, per-second series.

Latency is recorded in microseconds into an HdrHistogram (1 us .. 1 h, 3 significant digits: every
value within 0.1 %) for every request that got an HTTP answer; requests with no answer (timeout,
unreachable) are counted by class only, so an unreachable target cannot pull percentiles down.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

ERROR_CLASSES: tuple[str, ...] = (
    "unreachable",
    "timeout",
    "connection_error",
    "http_4xx",
    "http_5xx",
    "bad_body",
    "ping_failed",
)
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))
_MAX_US = 3_600_000_000


@dataclass
class SecondBucket:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    latencies_us: array = field(default_factory=lambda: array("q"))


class StepStats:
    """Everything measured for one step; `record_*` are called from the engine's event loop."""

    def __init__(self, name: str, planned: int):
        self.name = name
        self.planned = planned
        self.sent = 0
        self.ok = 0
        self.skipped = 0  # a parent failed, so the request was never sent
        self.not_sent = 0  # the run hit its time or request bound first
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self._histogram = HdrHistogram(1, _MAX_US, 3)
        self._pending = 0  # latency samples not yet in the histogram
        self._filled: dict[int, int] = {}  # second -> samples of that bucket already recorded
        self.seconds: dict[int, SecondBucket] = {}
        self.first_send: float | None = None
        self.send_lag_us = array("q")
        self.last_done: float | None = None

    def _bucket(self, second: int) -> SecondBucket:
        bucket = self.seconds.get(second)
        if bucket is None:
            bucket = self.seconds[second] = SecondBucket()
        return bucket

    def record_sent(self, t: float, lag: float) -> None:
        """`lag`: how late the client itself sent it (send time - scheduled time), in seconds."""
        self.sent += 1
        self.send_lag_us.append(min(int(lag * 1e6), _MAX_US))
        if self.first_send is None:
            self.first_send = t
        self._bucket(int(t)).sent += 1

    def record_done(self, t: float, latency_s: float | None, error: str | None, detail: str = "") -> None:
        """`t` is seconds since the run started; latency None means no HTTP answer came back."""
        self.last_done = t
        bucket = self._bucket(int(t))
        if latency_s is not None:
            # Only appended here; the histogram is filled when read (keeps the hot path short).
            bucket.latencies_us.append(min(max(int(latency_s * 1e6), 1), _MAX_US))
            self._pending += 1
        if error is None:
            self.ok += 1
            bucket.ok += 1
        else:
            self.errors[error] += 1
            bucket.errors += 1
            if len(self.error_samples) < 5 and detail:
                self.error_samples.append(f"{error}: {detail}"[:300])

    @property
    def histogram(self) -> HdrHistogram:
        if self._pending:
            for second, bucket in self.seconds.items():
                done = self._filled.get(second, 0)
                for us in bucket.latencies_us[done:]:
                    self._histogram.record_value(us)
                self._filled[second] = len(bucket.latencies_us)
            self._pending = 0
        return self._histogram

    def latency_ms(self) -> dict[str, float]:
        h = self.histogram
        if h.get_total_count() == 0:
            return {}
        out = {key: h.get_value_at_percentile(p) / 1000 for key, p in PERCENTILES}
        out["max"] = h.get_max_value() / 1000
        out["mean"] = round(h.get_mean_value() / 1000, 3)
        return out

    def throughput(self) -> float | None:
        """Answered requests per second over the span the step was active (None: under 10
        answers, too few for a rate)."""
        answered = self.sent - self.errors["unreachable"] - self.errors["timeout"]
        if self.first_send is None or self.last_done is None or answered < 10:
            return None
        return answered / max(self.last_done - self.first_send, 1e-3)

    def send_lag_ms(self) -> dict[str, float]:
        """The client's own lateness: when this grows, the controller (or its concurrency
        bound) did not keep up with the rate, and that wait is inside the latencies."""
        if not self.send_lag_us:
            return {}
        values = sorted(self.send_lag_us)
        return {"p50": _pick(values, 0.5), "p99": _pick(values, 0.99), "max": values[-1] / 1000}

    def series(self) -> list[dict[str, float]]:
        rows = []
        for second in sorted(self.seconds):
            b = self.seconds[second]
            row: dict[str, float] = {"t": second, "sent": b.sent, "ok": b.ok, "errors": b.errors}
            if b.latencies_us:
                values = sorted(b.latencies_us)
                for key, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
                    row[key] = _pick(values, p)
                row["max"] = values[-1] / 1000
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, object]:
        return {
            "planned": self.planned,
            "sent": self.sent,
            "ok": self.ok,
            "skipped": self.skipped,
            "not_sent": self.not_sent,
            "errors": {k: self.errors.get(k, 0) for k in ERROR_CLASSES},
            "error_samples": self.error_samples,
            "throughput_rps": None if (rate := self.throughput()) is None else round(rate, 2),
            "latency_ms": self.latency_ms(),
            "send_lag_ms": self.send_lag_ms(),
            "series": self.series(),
        }


def _pick(sorted_us: list[int], fraction: float) -> float:
    """The `fraction` quantile of sorted microsecond values, in milliseconds."""
    return sorted_us[min(len(sorted_us) - 1, int(len(sorted_us) * fraction))] / 1000
