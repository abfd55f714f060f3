"""Two labs on this host at once, neither setting its address pools: both come up side by side
(the second takes pools no running lab uses), both pass `check`, and each `down` removes only its
own (the other keeps running and still passes `check`). A lab whose state is lost is still
removed whole by `down --sweep`."""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from stacks.paths import Paths
from stacks.pool_records import read_records
from tests.e2e.conftest import REPO, cli_lab, lab_leftovers, leaf_spine_file, report
from tests.json_schema import valid_document

pytestmark = pytest.mark.e2e


def test_two_labs_without_pools_run_side_by_side(tmp_path: Path) -> None:
    token = secrets.token_hex(2)
    names = [f"e2ea{token}", f"e2eb{token}"]
    with ExitStack() as stack:
        files = {n: leaf_spine_file(tmp_path, n, 1, 2, 1, own_pools=False) for n in names}  # no pools
        labs = {n: stack.enter_context(cli_lab(n, files[n])) for n in names}
        # both at once, as two users would: pools are claimed one lab at a time
        with ThreadPoolExecutor(2) as pool:
            ups = dict(zip(names, pool.map(lambda n: labs[n]("up"), names), strict=True))
        for name, up in ups.items():
            assert up.returncode == 0, f"{name}: {report(up)}"  # `up` ends with a green `check`
        docs = {n: valid_document(labs[n]("validate", "--json").stdout, "distrilab-validate") for n in names}
        first, second = (docs[n]["pools"] for n in names)
        assert not set(first.values()) & set(second.values()), (first, second)
        records = read_records(Paths.for_repo(REPO))
        assert (records[names[0]], records[names[1]]) == (first, second)  # kept for every later command

        # the same lab brought up from a checkout whose state knows nothing of it: refused, untouched
        state = Paths.for_repo(REPO).state_file(names[1])
        hidden = state.rename(state.with_name(state.name + ".elsewhere"))
        try:
            again = labs[names[1]]("up")
            elsewhere_down = labs[names[1]]("down")
        finally:
            hidden.rename(state)
        assert again.returncode != 0 and "another checkout deployed it" in again.stderr + again.stdout
        # ... and `down` there destroys nothing: it names what it leaves and how to sweep it
        assert elsewhere_down.returncode != 0, report(elsewhere_down)
        assert "no state of this checkout holds them" in elsewhere_down.stderr, report(elsewhere_down)
        assert f"instance dl-{names[1]}-srv-01-01" in elsewhere_down.stderr, report(elsewhere_down)
        assert "down --sweep" in elsewhere_down.stderr

        down = labs[names[0]]("down")
        assert down.returncode == 0, report(down)
        assert lab_leftovers(names[0]) == {}
        assert lab_leftovers(names[1])["instances"]  # the other lab is untouched ...
        check = labs[names[1]]("check", "--json")
        assert check.returncode == 0 and json.loads(check.stdout)["ok"], report(check)  # ... and healthy
        assert names[0] not in read_records(Paths.for_repo(REPO))  # its pools are free again

        # the second lab's checkout loses its state: `down --sweep` still removes all of it
        state.unlink()
        swept = labs[names[1]]("down", "--sweep")
        assert swept.returncode == 0 and "labelled object(s) swept" in swept.stdout, report(swept)
        assert lab_leftovers(names[1]) == {}
        assert names[1] not in read_records(Paths.for_repo(REPO))
