"""The load-test controller: runs a scenario of Alcor API calls open-loop and reports what it measured.

Entry points: `run_scenario(scenario, target_url, out_dir, progress=None) -> Report` and
`python -m modules.loadgen SCENARIO --target URL --out DIR`.
"""

from modules.loadgen.engine import Progress
from modules.loadgen.report import Report
from modules.loadgen.runner import LoadTestError, run_scenario, run_scenario_async
from modules.loadgen.scenario import NodeSpec, Scenario, load_scenario, parse_scenario, with_nodes

__all__ = [
    "LoadTestError",
    "NodeSpec",
    "Progress",
    "Report",
    "Scenario",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
    "run_scenario_async",
    "with_nodes",
]
