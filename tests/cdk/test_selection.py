"""Node selectors for `up --only` / `up --limit`, and the subset of a lab a limit leaves."""

from __future__ import annotations

from pathlib import Path

import pytest

import cdk.stages
from cdk.pipeline import load_lab
from cdk.selection import SelectorError, limited, select
from stacks.lab_stack import stage_specs

REPO = Path(__file__).resolve().parents[2]
DEFAULT = load_lab(REPO / "labs" / "default.yaml")  # 2 spines, 2 leaves, 3 servers per leaf
FAT_TREE = load_lab(REPO / "labs" / "fat-tree-k4.yaml")


def test_names_globs_roles_and_kinds() -> None:
    assert select(DEFAULT, "leaf-02") == ("leaf-02",)
    assert select(DEFAULT, "leaf-*") == ("leaf-01", "leaf-02")
    assert select(DEFAULT, "spine") == ("spine-01", "spine-02")
    assert len(select(DEFAULT, "server")) == 6
    assert select(DEFAULT, " leaf-01 , srv-01-0[12] ") == ("leaf-01", "srv-01-01", "srv-01-02")


def test_fields_pick_pods_racks_and_hosts() -> None:
    pod = select(FAT_TREE, "pod=2")
    assert pod and all(FAT_TREE.topology.node(n).pod == 2 for n in pod)
    assert select(DEFAULT, "rack=leaf-02") == ("srv-02-01", "srv-02-02", "srv-02-03")
    assert len(select(DEFAULT, "host=local")) == len(DEFAULT.topology.nodes)


@pytest.mark.parametrize(("selector", "message"), [
    ("leaf-09", r"'leaf-09' matches no node of lab default\n  hint: expected a node name or glob"),
    ("leaf-01,lef-*", r"'lef-\*' matches no node"),
    ("zone=2", r"hint: expected one of pod=, rack=, host="),
    ("pod=9", r"'pod=9' matches no node"),
    (" , ", r"expected node names"),
])
def test_a_term_that_matches_nothing_is_refused_by_name(selector: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        select(DEFAULT, selector, "--only")


def test_a_limited_lab_keeps_its_nodes_addresses_and_only_their_links() -> None:
    part = limited(DEFAULT, select(DEFAULT, "spine-*,leaf-01,rack=leaf-01"))
    names = {n.name for n in part.topology.nodes}
    assert names == {"spine-01", "spine-02", "leaf-01", "srv-01-01", "srv-01-02", "srv-01-03"}
    assert all(link.a.node in names and link.b.node in names for link in part.topology.links)
    assert len(part.topology.links) == 2 + 3  # leaf-01 to both spines, and its three servers
    assert part.addressing == DEFAULT.addressing  # the rest keeps its addresses for later
    built = {s.stage.name: s.spec for s in stage_specs(part, cdk.stages.STAGES)}
    assert {n["name"] for n in built["nodes"]["nodes"]} == names
    assert {n["name"] for n in built["fabric"]["nodes"]} == names
