"""Start-up cost of the CLI: every distrilab command loads every command module (to register its
subcommand), so those modules import their heavy dependencies inside their handlers only.
Measured on the development machine: boto3 0.7 s, networkx 0.5 s, pylxd 0.45 s, the load
generator 0.25 s, cdktn (jsii) 1-2 s. A fresh interpreter, so nothing imported earlier counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from stacks.paths import REPO_ROOT

HEAVY = ("boto3", "botocore", "pylxd", "networkx", "cdktn", "jsii", "matplotlib", "modules", "images.builder")


def imported_after(code: str) -> list[str]:
    script = textwrap.dedent(
        f"""
        import json, sys
        {code}
        heavy = {HEAVY!r}
        print(json.dumps(sorted({{m for m in sys.modules if m.startswith(heavy)}})))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_registering_every_command_imports_no_heavy_library() -> None:
    assert imported_after("import stacks.cli; stacks.cli.build_parser()") == []


def test_loading_a_single_host_lab_needs_no_graph_library() -> None:
    # networkx serves only the partition of a lab over several hosts
    # (host_routes=(): independent of the labs running on this machine)
    load = (
        "import yaml; from cdk.pipeline import lab_from_dict; "
        "lab_from_dict(yaml.safe_load(open('labs/default.yaml')), 'labs/default.yaml', host_routes=())"
    )
    assert imported_after(load) == []
