"""The one-screen summary of a report as rows; the CLI renders them (rich), the module prints text."""

from __future__ import annotations

from typing import Any

#: Fits 80 columns: planned, not-sent and p90 are in the headline and the JSON.
HEADERS: tuple[str, ...] = ("step", "sent", "ok", "err", "skip", "req/s", "p50", "p99", "p99.9", "max")
LATENCY_NOTE = "latency in ms from each request's scheduled send time"
SHORT_NAMES = {
    "create_segment_table": "segments",
    "register_node": "nodes",
    "create_security_group": "sec.groups",
    "create_vpc": "vpcs",
    "create_subnet": "subnets",
    "create_port": "ports",
    "bind_port": "bind",
    "verify_ping": "ping",
}


def _ms(latency: dict[str, float], key: str) -> str:
    value = latency.get(key)
    return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, step in report["steps"].items():
        lat = step["latency_ms"]
        rows.append(
            [
                SHORT_NAMES.get(name, name),
                str(step["sent"]),
                str(step["ok"]),
                str(sum(step["errors"].values())),
                str(step["skipped"]),
                "-" if step["throughput_rps"] is None else f"{step['throughput_rps']:.0f}",
                _ms(lat, "p50"),
                _ms(lat, "p99"),
                _ms(lat, "p99_9"),
                _ms(lat, "max"),
            ]
        )
    return rows


def error_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, step in report["steps"].items():
        counts = {k: v for k, v in step["errors"].items() if v}
        if counts:
            lines.append(f"{name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
            lines += [f"    e.g. {sample}" for sample in step["error_samples"][:2]]
    return lines


def headline(report: dict[str, Any]) -> str:
    t = report["totals"]
    return (
        f"{report['scenario']['name']} -> {report['target']}: {t['planned']} planned, {t['sent']} sent, "
        f"{t['ok']} ok, {t['error_total']} errors, {t['skipped']} skipped, {t['not_sent']} not sent "
        f"in {report['duration_s']:.1f} s (stopped: {report['stopped_by']})"
    )


def format_text(report: dict[str, Any]) -> str:
    rows = [list(HEADERS), *summary_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = [headline(report), LATENCY_NOTE]
    for r in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    lines += error_lines(report)
    return "\n".join(lines)
