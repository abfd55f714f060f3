"""Node selectors (`up --only`, `up --limit`) and the subset of a lab they leave (pure).

A selector is a comma-separated list of terms; a node is selected when any term matches it:
- a node name (`leaf-02`) or a glob over names (`leaf-*`, `srv-0[12]-*`);
- a role (`spine`, `leaf`, `server`, ...) or a kind (`switch`, `server`);
- `pod=N`, `rack=SWITCH` or `host=NAME` (the pod, the rack switch, the lab host a node is on).
A term that matches no node is an error naming the term: a typo must not deploy nothing.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from cdk.errors import DistrilabError
from cdk.model import Lab, Node

FIELDS = ("pod", "rack", "host")


class SelectorError(DistrilabError):
    pass


def select(lab: Lab, selector: str, option: str = "--only") -> tuple[str, ...]:
    """The names of the nodes `selector` picks, in the lab's order."""
    terms = [t.strip() for t in selector.split(",") if t.strip()]
    if not terms:
        raise SelectorError(f"{option}: expected node names, roles, globs or pod=N, got {selector!r}")
    picked: set[str] = set()
    for term in terms:
        matched = {n.name for n in lab.topology.nodes if _matches(lab, n, term)}
        if not matched:
            raise SelectorError(_no_match(lab, term, option))
        picked |= matched
    return tuple(n.name for n in lab.topology.nodes if n.name in picked)


def _matches(lab: Lab, node: Node, term: str) -> bool:
    if "=" in term:
        field, _, value = term.partition("=")
        have = {"pod": node.pod, "rack": node.rack, "host": lab.placement.assignment.get(node.name)}
        return field in have and have[field] is not None and str(have[field]) == value
    return term in (node.role, node.kind) or fnmatch.fnmatchcase(node.name, term)


def _no_match(lab: Lab, term: str, option: str) -> str:
    field = term.partition("=")[0] if "=" in term else None
    if field is not None and field not in FIELDS:
        expected = f"one of {', '.join(f + '=' for f in FIELDS)}"
    else:
        roles = sorted({n.role for n in lab.topology.nodes} | {n.kind for n in lab.topology.nodes})
        first = lab.topology.nodes[0].name if lab.topology.nodes else "leaf-01"
        expected = f"a node name or glob (e.g. {first}), a role ({', '.join(roles)}) or pod=/rack=/host="
    return f"{option}: {term!r} matches no node of lab {lab.name}\n  hint: expected {expected}"


def limited(lab: Lab, names: tuple[str, ...]) -> Lab:
    """The lab with only `names`: their links among themselves, the rest left out. Addresses and
    placement stay those of the whole lab, so the nodes deployed now keep them when the rest comes."""
    keep = set(names)
    links = tuple(link for link in lab.topology.links if link.a.node in keep and link.b.node in keep)
    assignment = {n: h for n, h in lab.placement.assignment.items() if n in keep}
    crossing = sum(1 for link in links if assignment[link.a.node] != assignment[link.b.node])
    nodes = tuple(n for n in lab.topology.nodes if n.name in keep)
    return dataclasses.replace(
        lab,
        topology=dataclasses.replace(lab.topology, nodes=nodes, links=links),
        placement=dataclasses.replace(lab.placement, assignment=assignment, cross_host_links=crossing),
    )
