"""Load a lab description: a YAML lab file through cdk.pipeline, or a Python file that builds one."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from pathlib import Path

from cdk.errors import DistrilabError
from cdk.model import Lab


class LabNotFoundError(DistrilabError):
    def __init__(self, path: Path):
        self.hint = "pass the path of a lab file, e.g. labs/default.yaml (see labs/ for examples)"
        super().__init__(f"{path}: no such lab file\n  hint: {self.hint}")


def load(path: str | Path, check_host_routes: bool = True, claim_pools: bool = False,
         whole: bool = False) -> Lab:
    """The lab a file describes, as its last `up` deployed it: the part `up --limit` recorded
    (stacks/limits.py), or with `whole` the whole lab. See `load_whole`."""
    from stacks.limits import deployed_part
    from stacks.paths import Paths

    lab = load_whole(path, check_host_routes, claim_pools)
    check_scenario(lab)
    return lab if whole else deployed_part(Paths.for_repo(), lab)


def check_scenario(lab: Lab) -> None:
    """The controller's scenario file, checked with the lab (LabFileError naming the scenario's own
    lines) rather than when the controller stage starts."""
    if lab.controller is None:
        return
    from cdk.stages.controller import scenario_path, validate_section
    from modules.loadgen.scenario import load_scenario

    load_scenario(scenario_path(lab, validate_section(lab)))


def load_whole(path: str | Path, check_host_routes: bool = True, claim_pools: bool = False) -> Lab:
    """The fully expanded lab a file describes.

    `*.py` files define `LAB` (a cdk.model.Lab) or `lab() -> Lab`; anything else is a lab file
    for cdk.pipeline.load_lab (which raises LabFileError listing every problem).
    `check_host_routes=False` skips the check of the lab's pools against this host's routes.
    Pools the file leaves out are the ones the lab recorded, or free ones (stacks/pool_records.py);
    `claim_pools` (up, cdktf deploy) records them, under a lock shared with other labs' claims.
    """
    path = Path(path)
    if not path.is_file():
        raise LabNotFoundError(path)
    if path.suffix == ".py":
        return _load_python(path)
    pipeline = importlib.import_module("cdk.pipeline")  # not at the top: `*.py` labs need none of it
    from stacks.host_facts import read_host_routes
    from stacks.paths import Paths
    from stacks.pool_records import claiming, read_records, record

    routes = read_host_routes() if check_host_routes else ()
    paths = Paths.for_repo()
    with claiming(paths) if claim_pools else contextlib.nullcontext():
        records = read_records(paths)
        lab = pipeline.load_lab(path, host_routes=routes, pool_records=records)
        if any(h.kind == "ssh" and not h.capacity_given for h in lab.hosts):
            # what `up` read the hosts hold, so every command places the nodes as `up` did
            from modules.lab_secrets import read_capacities

            capacities = read_capacities(lab.name)
            if capacities:
                lab = pipeline.load_lab(path, host_routes=routes, capacities=capacities, pool_records=records)
        if claim_pools and isinstance(lab, Lab):
            record(paths, lab)
    if not isinstance(lab, Lab):
        raise TypeError(f"cdk.pipeline.load_lab returned {type(lab).__name__}, expected Lab")
    return lab


def _load_python(path: Path) -> Lab:
    spec = importlib.util.spec_from_file_location(f"distrilab_lab_{path.stem.replace('-', '_')}", path)
    if spec is None or spec.loader is None:
        raise DistrilabError(f"{path}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lab = getattr(module, "LAB", None)
    if lab is None and callable(getattr(module, "lab", None)):
        lab = module.lab()
    if not isinstance(lab, Lab):
        raise DistrilabError(
            f"{path}: defines no lab (got {type(lab).__name__})\n"
            "  hint: a Python lab file sets LAB = cdk.model.Lab(...) or defines lab() -> Lab"
        )
    return lab
