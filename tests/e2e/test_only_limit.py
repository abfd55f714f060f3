"""`up --limit` deploys part of a lab (inspect shows the rest left out, check passes on the part);
`up` then deploys the rest; `up --only leaf-02` recreates that leaf while two servers behind the
other leaves ping each other the whole time, and no other node is touched."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from modules import lxd_rest as rest
from tests.e2e.conftest import cli_lab, leaf_spine_file, report
from tests.json_schema import valid_document

pytestmark = pytest.mark.e2e

#: ping every 0.2 s for this long: covers `up --only` (about 15 s here) with room to spare
PING_SECONDS = 40


def created(lab: str) -> dict[str, str]:
    """instance -> its creation time (a recreated container gets a new one)."""
    return {name: str(i["created_at"]) for name, i in rest.owned_instances(rest.connect(None), lab).items()}


def test_limit_then_the_rest_then_one_leaf_recreated_under_traffic(lab_name: str, tmp_path: Path) -> None:
    lab_file = leaf_spine_file(tmp_path, lab_name, 2, 3, 1)
    with cli_lab(lab_name, lab_file) as distrilab:
        part = distrilab("up", "--limit", "spine-*,leaf-01,leaf-03,rack=leaf-01,rack=leaf-03")
        assert part.returncode == 0, report(part)  # and its check passed on the part
        shown = valid_document(distrilab("inspect", "--json").stdout, "distrilab-inspect")
        states = {n["node"]: n["state"] for n in shown["nodes"]}
        assert states.pop("leaf-02") == states.pop("srv-02-01") == "left out"
        assert set(states.values()) == {"Running"}
        assert shown["limit"]["nodes"] and "leaf-02" not in shown["limit"]["nodes"]

        whole = distrilab("up")
        assert whole.returncode == 0, report(whole)
        shown = valid_document(distrilab("inspect", "--json").stdout, "distrilab-inspect")
        assert shown["limit"] is None and {n["state"] for n in shown["nodes"]} == {"Running"}
        address = {n["node"]: n["fabric"][0].split()[1].split("/")[0] for n in shown["nodes"]
                   if n["role"] == "server"}

        before = created(lab_name)
        ping = subprocess.Popen(  # srv-01-01 -> srv-03-01 crosses leaf-01, a spine and leaf-03
            ["lxc", "exec", f"dl-{lab_name}-srv-01-01", "--", "ping", "-n", "-i", "0.2",
             "-w", str(PING_SECONDS), address["srv-03-01"]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            only = distrilab("up", "--only", "leaf-02")
            assert only.returncode == 0, report(only)
            assert "recreate leaf-02" in only.stdout
        finally:
            out = ping.communicate(timeout=PING_SECONDS + 30)[0]
        sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
        # the leaf's spine links flap; the path srv-01-01 -> srv-03-01 never used it: no packet lost
        assert sent >= PING_SECONDS * 4 and received == sent, out[-1500:]

        after = created(lab_name)
        changed = {name for name in before if after.get(name) != before[name]}
        assert changed == {f"dl-{lab_name}-leaf-02"}  # exactly that leaf, nothing else
        check = distrilab("check", "--json")
        assert check.returncode == 0 and json.loads(check.stdout)["ok"], report(check)

        wrong = distrilab("up", "--only", "leaf-09")
        assert wrong.returncode != 0 and "'leaf-09' matches no node" in wrong.stderr + wrong.stdout
