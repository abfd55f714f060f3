"""`down`'s report of what carries the lab's label but no state holds."""

from __future__ import annotations

from cdk.pipeline import lab_from_dict
from modules.reconcile import Action
from stacks.leftovers import leftover_error, leftovers

LAB = {"name": "lefty", "topology": {"kind": "leaf-spine", "spines": 1, "leaves": 1, "servers_per_leaf": 1}}


def test_the_error_lists_what_is_left_and_how_to_sweep_it() -> None:
    lab = lab_from_dict(LAB, "labs/lefty.yaml", host_routes=[])
    found = [Action("delete", f"instance dl-lefty-n{i}", "labelled lefty") for i in range(12)]
    text = str(leftover_error(lab, found))
    assert text.startswith("lab lefty: 12 object(s) still carry its label")
    assert "  - instance dl-lefty-n0\n" in text and "dl-lefty-n10" not in text and "... and 2 more" in text
    assert "'distrilab down --sweep labs/lefty.yaml'" in text


def test_a_lab_on_remote_hosts_is_not_read_after_down() -> None:
    # its cluster is dissolved by destroy; `down --sweep` is what reaches those hosts
    lab = lab_from_dict({**LAB, "hosts": [{"name": "h1", "kind": "ssh", "address": "192.0.2.10"}]},
                        host_routes=[])
    assert leftovers(lab) == []
