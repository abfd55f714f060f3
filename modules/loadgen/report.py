"""The run's report: one JSON document plus PNG plots, written to the output directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.loadgen.stats import ERROR_CLASSES, StepStats

REPORT_FILE = "report.json"


@dataclass
class Report:
    scenario: dict[str, Any]
    target: str
    endpoints: dict[str, str]
    run_id: str
    started_at: str  # ISO 8601, UTC
    duration_s: float
    stopped_by: str
    plan_truncated: bool
    steps: dict[str, StepStats]
    files: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, Any]:
        errors = {k: sum(s.errors.get(k, 0) for s in self.steps.values()) for k in ERROR_CLASSES}
        sent = sum(s.sent for s in self.steps.values())
        return {
            "planned": sum(s.planned for s in self.steps.values()),
            "sent": sent,
            "ok": sum(s.ok for s in self.steps.values()),
            "skipped": sum(s.skipped for s in self.steps.values()),
            "not_sent": sum(s.not_sent for s in self.steps.values()),
            "errors": errors,
            "error_total": sum(errors.values()),
            "throughput_rps": round(sent / self.duration_s, 2) if self.duration_s > 0 else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "distrilab-load-report",
            "version": 1,
            "scenario": self.scenario,
            "target": self.target,
            "endpoints": self.endpoints,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "stopped_by": self.stopped_by,
            "plan_truncated": self.plan_truncated,
            "totals": self.totals(),
            "steps": {name: s.to_dict() for name, s in self.steps.items()},
        }

    def write(self, out_dir: str | Path) -> list[str]:
        """Write report.json and the plots; returns the paths written."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        doc = self.to_dict()
        from modules.loadgen.plots import write_plots  # matplotlib only when writing

        files = [str(p) for p in write_plots(doc, out)]
        report_path = out / REPORT_FILE
        files.insert(0, str(report_path))
        self.files = files
        doc["files"] = [Path(f).name for f in files]
        report_path.write_text(json.dumps(doc, indent=2) + "\n")
        return files
