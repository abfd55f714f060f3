"""Topology generators: one module per `topology.kind`, registered in GENERATORS.

Each generator module exposes
- `SCHEMA`: JSON schema (draft 2020-12) of the kind's parameters, i.e. the lab file's `topology`
  section without `kind`; `additionalProperties` is false, ranges and defaults are in each
  property's `description`. JSON schema does not fill defaults: generators apply DEFAULTS themselves.
- `DEFAULTS`: the parameter defaults.
- `constraints(params, prefix="topology") -> [(field, message, value, hint)]`: the checks JSON
  schema cannot express; `params` is the section as written (before defaults), `field` a full
  lab-file path such as "topology.k" or "topology.links[3].b".
- `generate(params) -> Topology`: pure and deterministic (nodes sorted by name, links canonical and
  sorted, names from zero-padded indices). eth0 is management; fabric ports are eth1, eth2, ...

Kinds and the Distrinet classes they follow:
    leaf-spine  SpineAndLeafTopo(k)   (Distrinet mininet/mininet/topodc.py; `k` shorthand accepted)
    clos        3-tier DC of PR 21    (Distrinet mininet/custom/dc_topo.py; the defaults reproduce it)
    fat-tree    FatTreeTopo(k)        (Distrinet mininet/mininet/topodc.py)
    linear      LinearTopo(k, n)      (Mininet mininet/mininet/topo.py, as shipped in Distrinet)
    explicit    nodes and links listed in the lab file
"""

from __future__ import annotations

from types import ModuleType

from cdk.topology import clos, explicit, fat_tree, leaf_spine, linear
from cdk.topology.builder import MAX_NODES

GENERATORS: dict[str, ModuleType] = {
    leaf_spine.KIND: leaf_spine,
    clos.KIND: clos,
    fat_tree.KIND: fat_tree,
    linear.KIND: linear,
    explicit.KIND: explicit,
}

__all__ = ["GENERATORS", "MAX_NODES"]
