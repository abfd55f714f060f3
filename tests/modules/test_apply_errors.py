"""Apply-time errors translated into what to do: a full storage pool (LXD's real error text,
captured from an image unpack into a 128 MiB btrfs pool), LXD unreachable under a custom LXD_DIR."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdk.errors import ReconcileError
from modules import lxd_rest as rest
from modules.lxd_client import LxdUnreachableError, local_hint
from modules.lxd_host import Facts, Spec, plan_host, refuse_custom_daemon_dir
from modules.nodes import NodesReconciler
from modules.nodes import Spec as NodesSpec
from modules.reconcile import Action

#: LXD 5.0.2's error for `lxc init` of the switch image into a 128 MiB btrfs pool (first 2 of 4739 tar lines)
LXD_UNPACK_ENOSPC = (
    "Failed creating instance from image: Unpack failed: Failed to run: tar --restrict --force-local "
    "-C /var/lib/lxd/storage-pools/dl-errprobe-tiny/images/358efdd91fc3d3df25cf0690b65d378518d02902"
    "122442d32f980bab7f356a33 --numeric-owner --xattrs-include=* --zstd -xf -: Process exited with "
    "non-zero value 2 (tar: metadata.yaml: Cannot write: No space left on device\n"
    "tar: templates/hostname.tpl: Cannot write: No space left on device\n"
) + "tar: rootfs/etc/x: Cannot write: No space left on device\n" * 4000


def test_out_of_space_recognises_lxd_text() -> None:
    assert rest.out_of_space(LXD_UNPACK_ENOSPC)
    assert rest.out_of_space("write /x: ENOSPC")
    assert not rest.out_of_space("Image not found")


def nodes_spec(pool: str = "dl-t-tiny") -> NodesSpec:
    return NodesSpec(lab="t", host="local", max_workers=1, workers_limit=None, pool=pool, privileged=False,
                     network="dlm-t", gateway="10.0.0.1/24", nodes=())


class FailingNodes(NodesReconciler):
    def __init__(self, error: Exception):
        self.error = error

    def _execute_action(self, client: object, spec: NodesSpec, action: Action) -> None:
        raise self.error


def test_nodes_translate_a_full_pool_and_hint_what_to_do() -> None:
    reconciler = FailingNodes(rest.LxdCallError(LXD_UNPACK_ENOSPC))
    action = Action("create-template", "dl-t--tpl-switch", "missing", 1)
    with pytest.raises(rest.PoolFullError) as caught:
        reconciler.execute_action(None, nodes_spec(), action)
    text = str(caught.value)
    assert text == ("storage pool dl-t-tiny is full: no space left on device (LXD: Failed creating instance "
                    "from image: Unpack failed: tar: metadata.yaml: Cannot write: No space left on device)")
    failures = reconciler.execute(None, nodes_spec(), [action])
    hint = reconciler.failure_hint(failures)
    assert hint is not None and "lxc storage info dl-t-tiny" in hint and "lxd.storage_size" in hint


def test_other_lxd_errors_pass_through_with_the_usual_hint() -> None:
    reconciler = FailingNodes(rest.LxdCallError("Image not found"))
    action = Action("create", "dl-t-a", "missing", 3)
    with pytest.raises(rest.LxdCallError, match="Image not found"):
        reconciler.execute_action(None, nodes_spec(), action)
    failures = reconciler.execute(None, nodes_spec(), [action])
    assert "distrilab up" in (reconciler.failure_hint(failures) or "")


def host_spec() -> Spec:
    return Spec(lab="t", host="local", endpoint={"name": "local", "kind": "local"})


NOT_ANSWERING = Facts(missing_packages=(), kernel_btrfs=True, loop_devices=True, systemd=False,
                      lxd_answers=False)


def test_a_custom_lxd_dir_nothing_serves_is_refused_not_started(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("LXD_DIR", str(tmp_path))
    with pytest.raises(LxdUnreachableError) as caught:
        refuse_custom_daemon_dir(host_spec(), NOT_ANSWERING)
    text = str(caught.value)
    assert f"LXD at {tmp_path}/unix.socket does not answer" in text
    assert "unset LXD_DIR" in text and "python -m modules.lxd_host ensure" in text


def test_the_system_daemon_is_still_started(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in (None, "/var/lib/lxd"):
        if value is None:
            monkeypatch.delenv("LXD_DIR", raising=False)
        else:
            monkeypatch.setenv("LXD_DIR", value)
        refuse_custom_daemon_dir(host_spec(), NOT_ANSWERING)  # no error
        assert [a.verb for a in plan_host(host_spec(), NOT_ANSWERING)] == ["start", "create"]
        assert "'.ci/setup'" in local_hint() and "unset LXD_DIR" not in local_hint()


def test_many_failures_with_one_cause_are_counted_not_listed() -> None:
    failures = [("create-template t (missing)", "pool full")]
    failures += [(f"create n{i} (missing)", "skipped: a template failed") for i in range(1000)]
    text = str(ReconcileError("nodes", failures, hint="free space"))
    assert text.splitlines() == [
        "[nodes] 1001 action(s) failed:",
        "  - create-template t (missing): pool full",
        "  - create n0 (missing): skipped: a template failed",
        "  - create n1 (missing): skipped: a template failed",
        "  - and 998 more action(s): skipped: a template failed",
        "  hint: free space",
    ]
