"""The images stage: planning (pure), and for real (e2e): build, import once, alias, launch, destroy.

The e2e tests build `server` and `switch` with debootstrap the first time (about a minute; the
layers stay cached under ~/.cache/distrilab/images or $DISTRILAB_CACHE for later runs), import
them for a throwaway lab, and look inside a container of each.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdk.names import image_alias
from images.builder import rootfs_bytes
from modules.images import Images, Spec, alias_description, plan_images, resolve
from modules.lxd_client import connect

LAB = "t"
H_SERVER, H_SWITCH = "a" * 64, "b" * 64
FP_SERVER, FP_SWITCH, FP_OLD, FP_FOREIGN = "1" * 64, "2" * 64, "3" * 64, "4" * 64


def observed(
    aliases: dict[str, str] | None = None,
    images: dict[str, str] | None = None,
    foreign_aliases: dict[str, str] | None = None,
) -> dict[str, Any]:
    mine = {
        name: {"target": fp, "description": alias_description(LAB)} for name, fp in (aliases or {}).items()
    }
    other = {
        name: {"target": fp, "description": "someone else"} for name, fp in (foreign_aliases or {}).items()
    }
    return {
        "wanted": {"server": H_SERVER, "switch": H_SWITCH},
        "aliases": {**mine, **other},
        "images": {fp: {"hash": h, "recipe": "x"} for fp, h in (images or {}).items()},
    }


def spec(*recipes: str) -> Spec:
    return Spec(lab=LAB, host="local", recipes=recipes)


def test_fresh_host_imports_then_aliases() -> None:
    actions = plan_images(spec("server", "switch"), observed())
    assert [(a.phase, a.verb, a.target) for a in actions] == [
        (0, "import", "server"),
        (1, "alias", "dl-t-server"),
        (0, "import", "switch"),
        (1, "alias", "dl-t-switch"),
    ]


def test_imported_images_are_not_imported_again() -> None:
    actions = plan_images(
        spec("server", "switch"), observed(images={FP_SERVER: H_SERVER, FP_SWITCH: H_SWITCH})
    )
    assert {a.verb for a in actions} == {"alias"}


def test_converged_lab_plans_nothing() -> None:
    state = observed(
        {"dl-t-server": FP_SERVER, "dl-t-switch": FP_SWITCH}, {FP_SERVER: H_SERVER, FP_SWITCH: H_SWITCH}
    )
    assert plan_images(spec("server", "switch"), state) == []


def test_changed_recipe_moves_the_alias_and_drops_the_old_image() -> None:
    state = observed(
        {"dl-t-server": FP_OLD, "dl-t-switch": FP_SWITCH},
        {FP_OLD: "c" * 64, FP_SERVER: H_SERVER, FP_SWITCH: H_SWITCH},
    )
    actions = plan_images(spec("server", "switch"), state)
    assert [(a.verb, a.target, a.reason) for a in actions] == [
        ("alias", "dl-t-server", "drift: 333333333333->111111111111"),
        ("delete", f"image x {FP_OLD[:12]}", "no alias refers to it"),
    ]


def test_destroy_removes_only_the_labs_aliases_and_unreferenced_distrilab_images() -> None:
    state = observed(
        {"dl-t-server": FP_SERVER, "dl-t-switch": FP_SWITCH},
        {FP_SERVER: H_SERVER, FP_SWITCH: H_SWITCH},
        foreign_aliases={"dl-t-b-switch": FP_SWITCH, "ubuntu": FP_FOREIGN},
    )
    empty = Images().empty_spec(spec("server", "switch"))
    state["wanted"] = {}
    actions = plan_images(empty, state)
    assert [(a.verb, a.target) for a in actions] == [
        ("unalias", "dl-t-server"),
        ("unalias", "dl-t-switch"),
        ("delete", f"image x {FP_SERVER[:12]}"),  # the switch image is still another lab's alias target
    ]


def test_images_this_lab_never_aliased_are_left_alone() -> None:
    # another lab's import whose alias is not made yet, or a `distrilab image build --import`
    state = observed(
        {"dl-t-server": FP_SERVER, "dl-t-switch": FP_SWITCH},
        {FP_SERVER: H_SERVER, FP_SWITCH: H_SWITCH, FP_OLD: "c" * 64},
    )
    assert plan_images(spec("server", "switch"), state) == []
    state["wanted"] = {}
    deleted = [
        a.data["fingerprint"] for a in plan_images(Images().empty_spec(spec()), state) if a.verb == "delete"
    ]
    assert deleted == [FP_SERVER, FP_SWITCH]


# ---------------------------------------------------------------- e2e


@pytest.fixture(scope="module")
def imported() -> Iterator[tuple[Any, str, dict[str, float]]]:
    lab = f"t{uuid.uuid4().hex[:6]}"
    the_spec = Spec(
        lab=lab, host="local", endpoint={"name": "local", "kind": "local"}, recipes=("server", "switch")
    )
    reconciler = Images()
    client = connect()
    started = time.monotonic()
    try:
        reconciler.converge(the_spec)
        timings = {"apply": time.monotonic() - started}
        yield client, lab, timings
    finally:
        for inst in client.instances.all():
            if inst.name.startswith(f"dl-{lab}-"):
                inst.delete(wait=True) if inst.status == "Stopped" else (
                    inst.stop(force=True, wait=True),
                    inst.delete(wait=True),
                )
        reconciler.converge(reconciler.empty_spec(the_spec))
        left = [
            a
            for a in client.api.images.aliases.get(params={"recursion": 1}).json()["metadata"]
            if a.get("description") == alias_description(lab)
        ]
        assert left == []


def launch(client: Any, lab: str, recipe: str, devices: dict[str, dict[str, str]] | None = None) -> Any:
    name = f"dl-{lab}-{recipe}-1"
    inst = client.instances.create(
        {
            "name": name,
            "source": {"type": "image", "alias": image_alias(lab, recipe)},
            "devices": {"root": {"type": "disk", "path": "/", "pool": "distrilab"}, **(devices or {})},
            "config": {"user.distrilab.lab": lab, "user.distrilab.owner": "tests"},
        },
        wait=True,
    )
    inst.start(wait=True)
    return inst


def sh(inst: Any, script: str) -> tuple[int, str]:
    result = inst.execute(["sh", "-c", script])
    return result.exit_code, result.stdout + result.stderr


def wait_for(inst: Any, script: str, seconds: float = 15) -> str:
    deadline = time.monotonic() + seconds
    while True:
        code, out = sh(inst, script)
        if code == 0 or time.monotonic() > deadline:
            assert code == 0, out
            return out
        time.sleep(0.2)


@pytest.mark.e2e
def test_apply_is_idempotent_and_aliases_resolve(imported: tuple[Any, str, dict[str, float]]) -> None:
    client, lab, _ = imported
    assert Images().converge(Spec(lab=lab, host="local", recipes=("server", "switch"))) == 0
    fps = {r: resolve(client, lab, r) for r in ("server", "switch")}
    assert fps["server"] != fps["switch"]
    for recipe, fp in fps.items():
        props = client.api.images[fp].get().json()["metadata"]["properties"]
        assert props["distrilab.recipe"] == recipe and len(props["distrilab.hash"]) == 64


@pytest.mark.e2e
def test_server_boots_its_init_runs_boot_hooks_and_stops_cleanly(
    imported: tuple[Any, str, dict[str, float]],
) -> None:
    client, lab, _ = imported
    started = time.monotonic()
    inst = launch(client, lab, "server")
    out = wait_for(inst, "ps -o comm= -p 1 && pgrep -x runsvdir && cat /etc/hostname")
    assert out.split()[0] == "tini" and inst.name in out
    boot = time.monotonic() - started
    # the node reconciler's hook dir: runs at every boot, before services
    hook = "#!/bin/sh\necho configured > /run/hook-ran\n"
    inst.files.put("/etc/distrilab/boot.d/10-test", hook, mode="0755")
    started = time.monotonic()
    inst.stop(wait=True, timeout=20)  # a clean stop: the init handles SIGPWR
    stop = time.monotonic() - started
    assert client.instances.get(inst.name).status == "Stopped"
    inst.start(wait=True)
    assert wait_for(inst, "cat /run/hook-ran").strip() == "configured"
    print(f"server: create+start {boot:.2f}s, clean stop {stop:.2f}s")


@pytest.mark.e2e
def test_switch_supervises_ovs_and_makes_netdev_bridges(imported: tuple[Any, str, dict[str, float]]) -> None:
    client, lab, _ = imported
    tun = {"tun": {"type": "unix-char", "source": "/dev/net/tun", "path": "/dev/net/tun"}}
    inst = launch(client, lab, "switch", tun)
    wait_for(
        inst,
        "sv status ovsdb-server | grep -q ^run: && sv status ovs-vswitchd | grep -q ^run: "
        "&& ovs-vsctl --timeout=2 show",
    )
    code, out = sh(
        inst,
        "ovs-vsctl add-br br0 -- set bridge br0 datapath_type=netdev && "
        "ovs-vsctl get bridge br0 datapath_type && ip link show br0",
    )
    assert code == 0 and "netdev" in out, out
    # supervision: a killed ovs-vswitchd comes back by itself
    before = wait_for(inst, "cat /run/openvswitch/ovs-vswitchd.pid").strip()
    sh(inst, f"kill {before}")
    after = wait_for(
        inst,
        f'p=$(cat /run/openvswitch/ovs-vswitchd.pid) && [ "$p" != {before} ] && '
        "kill -0 $p && ovs-vsctl --timeout=2 br-exists br0",
        seconds=20,
    )
    assert after is not None


@pytest.mark.e2e
def test_images_sizes_are_reported() -> None:
    from images.builder import ImageBuilder, pack

    builder = ImageBuilder()
    for recipe, limit_mb in (("server", 200), ("switch", 300)):
        image = builder.build(recipe)
        assert image.cached  # the fixture built it
        size = rootfs_bytes(image) / 1e6
        packed = pack(image).stat().st_size / 1e6
        print(f"{recipe}: rootfs {size:.0f} MB, packed {packed:.0f} MB")
        assert 20 < size < limit_mb
