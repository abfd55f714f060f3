"""The `router` image: recipe chain, FRR's zebra and bgpd as runit services, the frr-prepare script.

Unit tests run the recipe loader, the builder (with the fake Debian of test_builder) and the image's
shell script on this host; nothing here debootstraps or needs LXD.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from images.builder import ImageBuilder
from images.recipe import RECIPES_DIR, RecipeBook
from tests.images.test_builder import FakeDebian

FRR_PREPARE = RECIPES_DIR / "files" / "router" / "frr-prepare"
DAEMONS = ("zebra", "bgpd")


def _recipes_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped recipes, to edit without touching the tree."""
    dest = tmp_path / "recipes"
    shutil.copytree(RECIPES_DIR, dest)
    return dest


def _plan(recipes: Path, tmp_path: Path) -> dict[str, str]:
    builder = ImageBuilder(book=RecipeBook([recipes]), cache=tmp_path / "cache")
    return {layer.name: digest for layer, digest, _ in builder.plan("router")}


# ---------------------------------------------------------------- recipe


def test_router_extends_server_and_declares_zebra_and_bgpd() -> None:
    chain = RecipeBook().chain("router")
    assert [layer.name for layer in chain.layers] == ["server", "router"]
    assert set(chain.leaf.services) == set(DAEMONS)
    # the server's init and supervision come along
    assert {"runit", "tini"} <= set(chain.root.packages)


def test_frr_is_installed_without_python() -> None:
    packages = RecipeBook().get("router").packages
    assert "frr" in packages
    # frr-pythontools is only a Recommends (the builder skips those): nothing pulls python3 in
    assert not [p for p in packages if "python" in p or p == "frr-pythontools"]


@pytest.mark.parametrize("daemon", DAEMONS)
def test_each_daemon_runs_in_the_foreground_on_its_own_config(daemon: str) -> None:
    command = RecipeBook().get("router").services[daemon]
    prepare, _, run = command.partition(" && ")
    assert prepare == f"/usr/lib/distrilab/frr-prepare {daemon}"
    words = run.split()
    # exec: runsv supervises the daemon itself, and restarts it when it exits
    assert words[:2] == ["exec", f"/usr/lib/frr/{daemon}"]
    assert words[words.index("-f") + 1] == f"/etc/frr/{daemon}.conf"
    assert words[words.index("--log") + 1] == f"file:/var/log/frr/{daemon}.log"
    assert words[words.index("-F") + 1] == "datacenter"
    assert "-d" not in words and "--daemon" not in words  # would fork away from runsv
    for integrated in ("watchfrr", "frrinit", "frr.conf"):
        assert integrated not in command


def test_the_integrated_config_is_replaced_by_per_daemon_files() -> None:
    steps = {s.name: s.run for s in RecipeBook().get("router").steps}
    script = steps["frr-per-daemon-config"]
    assert "rm -f /etc/frr/frr.conf" in script
    assert "no service integrated-vtysh-config" in script
    assert "install -o frr -g frr -m 0640 /dev/null /etc/frr/$daemon.conf" in script


# ---------------------------------------------------------------- built with a fake Debian


def test_the_built_layer_has_a_runit_service_per_daemon(tmp_path: Path) -> None:
    fake = FakeDebian()
    builder = ImageBuilder(cache=tmp_path / "cache", bootstrap=fake.bootstrap, runner=fake.run,
                           mirror="http://deb.example/debian")
    image = builder.build("router")
    assert image.layers[0].startswith("server-") and image.layers[1].startswith("router-")
    services = RecipeBook().get("router").services
    for daemon in DAEMONS:
        run = image.rootfs / "etc" / "service" / daemon / "run"
        assert run.read_text() == f"#!/bin/sh\nexec 2>&1\n{services[daemon]}\n"
        assert os.access(run, os.X_OK)
    prepare = image.rootfs / "usr/lib/distrilab/frr-prepare"
    assert prepare.read_bytes() == FRR_PREPARE.read_bytes() and os.access(prepare, os.X_OK)
    router_scripts = [script for layer, script, _ in fake.scripts if layer.startswith(".build-router-")]
    assert any("apt-get install" in s and " frr" in s for s in router_scripts)
    assert image.properties["description"].startswith("distrilab router")


def test_a_changed_frr_prepare_changes_the_router_hash_only(tmp_path: Path) -> None:
    recipes = _recipes_copy(tmp_path)
    before = _plan(recipes, tmp_path)
    script = recipes / "files" / "router" / "frr-prepare"
    script.write_text(script.read_text().replace("wait_zebra 50", "wait_zebra 30"))
    after = _plan(recipes, tmp_path)
    assert after["server"] == before["server"]
    assert after["router"] != before["router"]


# ---------------------------------------------------------------- frr-prepare, run here


def test_frr_prepare_is_executable_posix_sh() -> None:
    assert os.access(FRR_PREPARE, os.X_OK)
    assert FRR_PREPARE.read_text().startswith("#!/bin/sh\n")
    proc = subprocess.run(["sh", "-n", str(FRR_PREPARE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args", [[], ["ospfd"], ["../zebra"]])
def test_frr_prepare_refuses_other_daemons_before_touching_anything(args: list[str]) -> None:
    proc = subprocess.run([str(FRR_PREPARE), *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2
    assert "usage: frr-prepare zebra|bgpd" in proc.stderr
