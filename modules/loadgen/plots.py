"""PNG plots of a report: latency percentiles, throughput and errors over time, one line per step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in containers or CI
import matplotlib.pyplot as plt


def _figure(title: str, ylabel: str):
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    ax.set_title(title)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig, path: Path, ax) -> Path:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    steps: dict[str, Any] = report["steps"]
    target = report.get("target", "")

    fig, ax = _figure(f"Latency from scheduled send time ({target})", "milliseconds")
    for name, step in steps.items():
        rows = [r for r in step["series"] if "p50" in r]
        if not rows:
            continue
        t = [r["t"] for r in rows]
        (line,) = ax.plot(t, [r["p50"] for r in rows], marker=".", label=f"{name} p50")
        ax.plot(
            t,
            [r["p99"] for r in rows],
            linestyle="--",
            marker=".",
            color=line.get_color(),
            label=f"{name} p99",
        )
    ax.set_yscale("log") if any(step["series"] for step in steps.values()) else None
    latency = _save(fig, out / "latency.png", ax)

    fig, ax = _figure("Throughput (answered successfully per second)", "requests/s")
    for name, step in steps.items():
        rows = step["series"]
        if rows:
            ax.plot([r["t"] for r in rows], [r["ok"] for r in rows], marker=".", label=name)
    throughput = _save(fig, out / "throughput.png", ax)

    fig, ax = _figure("Errors per second", "errors/s")
    for name, step in steps.items():
        rows = [r for r in step["series"] if r["errors"]]
        if rows:
            ax.plot([r["t"] for r in rows], [r["errors"] for r in rows], marker="x", label=name)
    totals = report.get("totals", {}).get("errors", {})
    summary = ", ".join(f"{k}={v}" for k, v in totals.items() if v) or "none"
    ax.text(0.01, 0.97, f"totals: {summary}", transform=ax.transAxes, va="top", fontsize=8)
    errors = _save(fig, out / "errors.png", ax)
    return [latency, throughput, errors]
