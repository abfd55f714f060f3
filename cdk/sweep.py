"""The lab's sweep: what `destroy` removes last, and on which hosts (pure; modules/sweep.py runs it).

Every object a lab creates carries its label (LXD config `user.distrilab.lab`, image aliases
`dl-<lab>-*`, interface aliases `distrilab:<lab>:`). The sweep deletes what still carries it once
the stages are destroyed: objects of tainted stage resources, whose destroy provisioners
terraform skips. It runs before the cluster stage's destroy, while the lab's LXD cluster still
exists: LXD objects through the API of the lab's first host (cluster-wide), interfaces on each host.
"""

from __future__ import annotations

from typing import Any

from cdk.model import Lab
from cdk.stages.nodes import endpoint

#: terraform name of the sweep resource, and its row in the progress table
SWEEP = "sweep"
#: JSON {host: address} for hosts whose address exists only at apply time (aws instances)
HOST_ADDRESSES_ENV = "DISTRILAB_HOST_ADDRESSES"


def sweep_spec(lab: Lab) -> dict[str, Any]:
    return {
        "lab": lab.name,
        "host": "*",
        "max_workers": lab.lxd.max_workers,
        "cluster": endpoint(lab.hosts[0], lab.name),
        "hosts": [endpoint(h, lab.name) for h in lab.hosts],
    }
