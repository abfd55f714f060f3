"""What still carries a lab's label once `down` has destroyed what its state holds.

terraform destroys what the lab's state knows. A lab whose state is gone (a deleted checkout, a
CI clone that died mid-run) or that another checkout brought up under the same name leaves
objects no state holds: `down` names them and fails; `down --sweep` deletes them through the
lab's sweep (modules/sweep.py: only what carries the label, on the lab's hosts).
"""

from __future__ import annotations

from cdk.errors import DistrilabError
from cdk.model import Lab
from cdk.sweep import sweep_spec
from modules.lxd_client import LxdUnreachableError
from modules.reconcile import Action
from modules.sweep import Sweep, SweepSpec


def _sweep_of(lab: Lab) -> tuple[Sweep, SweepSpec]:
    sweep = Sweep()
    return sweep, sweep.empty_spec(sweep.load_spec(sweep_spec(lab)))


def leftovers(lab: Lab) -> list[Action]:
    """What the sweep would delete, read where that needs no remote host: this machine's LXD.
    (A remote cluster is dissolved by destroy; `down --sweep` reaches remote hosts.)"""
    if lab.hosts[0].kind != "local":
        return []
    sweep, spec = _sweep_of(lab)
    try:
        return sweep.plan(spec, sweep.observe(sweep.connect(spec), spec))
    except LxdUnreachableError:
        return []  # no daemon answers: nothing of the lab can be running here


def leftover_error(lab: Lab, found: list[Action]) -> DistrilabError:
    listed = "\n".join(f"  - {a.target}" for a in found[:10])
    more = f"\n  ... and {len(found) - 10} more" if len(found) > 10 else ""
    return DistrilabError(
        f"lab {lab.name}: {len(found)} object(s) still carry its label, and no state of this checkout "
        f"holds them:\n{listed}{more}\n"
        "  they were brought up from another checkout, or this checkout lost the lab's state\n"
        f"  hint: 'distrilab down --sweep {lab.source}' deletes everything labelled {lab.name} on its hosts"
    )


def sweep_leftovers(lab: Lab) -> int:
    """Delete everything labelled with the lab on its hosts; the number of objects deleted."""
    sweep, spec = _sweep_of(lab)
    return sweep.converge(spec)
