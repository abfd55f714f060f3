"""The builder with an injected bootstrapper and chroot runner: layering, cache, inputs, packing.

No debootstrap here: `FakeDebian` makes a tiny root filesystem and records every chroot script,
so these tests check what the builder does, not what apt does (the e2e tests build for real).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from cdk.errors import ImageBuildError
from images.builder import (
    INPUT_MOUNT,
    MANIFEST,
    ImageBuilder,
    _in_root,
    fingerprint,
    pack,
    system_mirror,
)
from images.recipe import RecipeBook


class FakeDebian:
    """Bootstrapper + runner: a root filesystem with just enough in it, and a log of scripts."""

    def __init__(self) -> None:
        self.bootstraps: list[tuple[str, str, str]] = []
        self.scripts: list[tuple[str, str, dict[str, Path]]] = []
        self.fail_on: str | None = None

    def bootstrap(self, rootfs: Path, suite: str, variant: str, mirror: str) -> None:
        self.bootstraps.append((suite, variant, mirror))
        for d in ("etc", "usr/bin", "tmp"):
            (rootfs / d).mkdir(parents=True)
        (rootfs / "etc" / "os-release").write_text(f"debian {suite}\n")
        (rootfs / "etc" / "resolv.conf").write_text("nameserver 192.0.2.53\n")

    def run(self, rootfs: Path, script: str, binds: Mapping[str, Path]) -> None:
        self.scripts.append((rootfs.parent.name, script, dict(binds)))
        if self.fail_on and self.fail_on in script:
            raise ImageBuildError("chroot step failed (exit 1):\nboom")
        if "runit" in script:  # "installing" runit provides runsvdir
            (rootfs / "usr" / "bin" / "runsvdir").write_text("")
        marker = rootfs / "ran"
        marker.mkdir(exist_ok=True)
        (marker / str(len(self.scripts))).write_text(script)


@pytest.fixture
def fake() -> FakeDebian:
    return FakeDebian()


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    d = tmp_path / "recipes"
    (d / "files").mkdir(parents=True)
    (d / "files" / "init").write_text("#!/bin/sh\nexec sleep 1\n")
    (d / "files" / "init").chmod(0o755)
    (d / "base.yaml").write_text(
        "name: base\npackages: [runit]\nfiles: {/sbin/init: files/init}\n"
        "services: {sleeper: exec sleep 100}\nstart: echo booted\nproperties: {description: base}\n"
    )
    (d / "tool.yaml").write_text(
        "name: tool\nextends: base\npackages: [make]\n"
        "steps:\n  - {name: prepare, run: echo prepare}\n"
        "  - {name: compile, run: make -C /run/distrilab/inputs/src, needs: src}\n"
    )
    return d


def make_builder(recipes: Path, tmp_path: Path, fake: FakeDebian) -> ImageBuilder:
    return ImageBuilder(
        book=RecipeBook([recipes]),
        cache=tmp_path / "cache",
        bootstrap=fake.bootstrap,
        runner=fake.run,
        mirror="http://mirror.invalid/debian",
    )


def test_root_layer_bootstraps_and_installs_the_runtime(
    recipes: Path, tmp_path: Path, fake: FakeDebian
) -> None:
    image = make_builder(recipes, tmp_path, fake).build("base")
    assert fake.bootstraps == [("bookworm", "minbase", "http://mirror.invalid/debian")]
    root = image.rootfs
    assert (root / "sbin" / "init").stat().st_mode & 0o111  # executable bit kept
    assert (
        root / "etc" / "service" / "sleeper" / "run"
    ).read_text() == "#!/bin/sh\nexec 2>&1\nexec sleep 100\n"
    assert "echo booted" in (root / "etc" / "distrilab" / "start").read_text()
    assert (root / "etc" / "distrilab" / "boot.d").is_dir()
    assert (root / "etc" / "resolv.conf").read_text() == ""  # the build host's resolver stays out
    assert not (root / "usr" / "sbin" / "policy-rc.d").exists()
    assert image.properties["distrilab.recipe"] == "base"
    assert image.properties["distrilab.hash"] == image.hash
    assert image.properties["description"] == "base"
    assert not image.cached


def test_child_starts_from_the_parent_layer_and_never_bootstraps_again(
    recipes: Path, tmp_path: Path, fake: FakeDebian
) -> None:
    builder = make_builder(recipes, tmp_path, fake)
    base = builder.build("base")
    tool = builder.build("tool", {"src": recipes})
    assert len(fake.bootstraps) == 1  # only the base layer bootstrapped
    assert tool.layers[0] == base.directory.name
    assert (tool.rootfs / "etc" / "os-release").is_file()  # inherited from the parent's rootfs
    assert (tool.rootfs / "etc" / "service" / "sleeper" / "run").is_file()
    assert (base.rootfs / "ran").is_dir() and len(list((tool.rootfs / "ran").iterdir())) > len(
        list((base.rootfs / "ran").iterdir())
    )


def test_unchanged_rebuild_is_a_cache_hit_under_a_second(
    recipes: Path, tmp_path: Path, fake: FakeDebian
) -> None:
    builder = make_builder(recipes, tmp_path, fake)
    first = builder.build("tool", {"src": recipes})
    calls = (len(fake.bootstraps), len(fake.scripts))
    started = time.monotonic()
    again = make_builder(recipes, tmp_path, fake).build("tool", {"src": recipes})
    assert time.monotonic() - started < 1.0
    assert again.cached and again.hash == first.hash and again.directory == first.directory
    assert (len(fake.bootstraps), len(fake.scripts)) == calls


def test_changed_child_reuses_the_cached_parent(recipes: Path, tmp_path: Path, fake: FakeDebian) -> None:
    builder = make_builder(recipes, tmp_path, fake)
    first = builder.build("tool", {"src": recipes})
    (recipes / "tool.yaml").write_text((recipes / "tool.yaml").read_text().replace("[make]", "[make, gcc]"))
    second = make_builder(recipes, tmp_path, fake).build("tool", {"src": recipes})
    assert len(fake.bootstraps) == 1
    assert second.hash != first.hash and second.layers[0] == first.layers[0]


def test_needed_input_is_bound_at_the_documented_place(
    recipes: Path, tmp_path: Path, fake: FakeDebian
) -> None:
    make_builder(recipes, tmp_path, fake).build("tool", {"src": recipes})
    compile_step = [binds for _, script, binds in fake.scripts if script.startswith("make")]
    assert compile_step == [{f"{INPUT_MOUNT}/src": recipes.resolve()}]


def test_missing_input_stops_before_building_and_names_the_flag(
    recipes: Path, tmp_path: Path, fake: FakeDebian
) -> None:
    with pytest.raises(ImageBuildError) as err:
        make_builder(recipes, tmp_path, fake).build("tool")
    text = str(err.value)
    assert "step 'compile' needs input 'src'" in text and "--input src=PATH" in text
    assert fake.bootstraps == []  # nothing was built


def test_skipping_a_missing_input_records_it(recipes: Path, tmp_path: Path, fake: FakeDebian) -> None:
    image = make_builder(recipes, tmp_path, fake).build("tool", skip_missing=("src",))
    assert image.skipped == ("compile",)
    assert image.properties["distrilab.skipped"] == "compile"
    assert not any(script.startswith("make") for _, script, _ in fake.scripts)
    full = make_builder(recipes, tmp_path, fake).build("tool", {"src": recipes})
    assert full.hash != image.hash and "distrilab.skipped" not in full.properties


def test_failed_step_leaves_no_layer_behind(recipes: Path, tmp_path: Path, fake: FakeDebian) -> None:
    fake.fail_on = "echo prepare"
    with pytest.raises(ImageBuildError, match="recipe tool: step 'prepare' failed"):
        make_builder(recipes, tmp_path, fake).build("tool", {"src": recipes})
    cache = tmp_path / "cache"
    names = sorted(p.name for p in cache.iterdir() if p.is_dir())
    assert len(names) == 1 and names[0].startswith("base-")  # the base layer completed, tool did not
    fake.fail_on = None
    assert not make_builder(recipes, tmp_path, fake).build("tool", {"src": recipes}).cached


def test_services_without_runit_are_refused(tmp_path: Path, fake: FakeDebian) -> None:
    d = tmp_path / "r"
    d.mkdir()
    (d / "bare.yaml").write_text("name: bare\nservices: {x: exec sleep 1}\n")
    with pytest.raises(ImageBuildError, match="need runit"):
        make_builder(d, tmp_path, fake).build("bare")


def test_no_cache_rebuilds_every_layer(recipes: Path, tmp_path: Path, fake: FakeDebian) -> None:
    make_builder(recipes, tmp_path, fake).build("base")
    make_builder(recipes, tmp_path, fake).build("base", no_cache=True)
    assert len(fake.bootstraps) == 2


def test_pack_makes_an_lxd_tarball_once(recipes: Path, tmp_path: Path, fake: FakeDebian) -> None:
    image = make_builder(recipes, tmp_path, fake).build("base")
    tarball = pack(image)
    fp = fingerprint(tarball)
    assert pack(image) == tarball and fingerprint(tarball) == fp  # packed once, same fingerprint
    listing = subprocess.run(["tar", "-tf", str(tarball)], capture_output=True, text=True, check=True).stdout
    assert "metadata.yaml" in listing.split() and "rootfs/sbin/init" in listing.split()
    metadata = yaml.safe_load((image.directory / "metadata.yaml").read_text())
    assert metadata["properties"]["distrilab.hash"] == image.hash
    assert metadata["templates"]["/etc/hostname"]["template"] == "hostname.tpl"
    assert json.loads((image.directory / MANIFEST).read_text())["hash"] == image.hash


def test_image_symlinks_resolve_inside_the_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc" / "runit" / "runsvdir" / "default").mkdir(parents=True)
    (root / "etc" / "service").symlink_to("/etc/runit/runsvdir/default")  # absolute, as Debian ships it
    assert _in_root(root, "/etc/service/x/run") == root / "etc/runit/runsvdir/default/x/run"
    (root / "up").symlink_to("../../..")
    assert _in_root(root, "/up/etc/passwd") == root / "etc" / "passwd"


# ---------------------------------------------------------------- mirror


def test_mirror_from_deb822_skips_security_and_disabled(tmp_path: Path) -> None:
    d = tmp_path / "etc" / "apt" / "sources.list.d"
    d.mkdir(parents=True)
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.invalid/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://off.invalid/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
        "Types: deb deb-src\n# a comment\nURIs: http://mirror.invalid/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main contrib\n"
    )
    assert system_mirror("bookworm", tmp_path) == "http://mirror.invalid/debian"


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        "# deb http://commented.invalid/debian bookworm main\n"
        "deb http://security.invalid/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/x.gpg] http://mirror.invalid/debian bookworm main non-free\n"
    )
    assert system_mirror("bookworm", tmp_path) == "http://mirror.invalid/debian"


def test_no_mirror_is_an_error_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "etc" / "apt" / "sources.list.d").mkdir(parents=True)
    with pytest.raises(ImageBuildError) as err:
        system_mirror("bookworm", tmp_path)
    assert "no Debian mirror for suite 'bookworm'" in str(err.value)
    assert "image_options.mirror" in str(err.value)


def test_leftover_of_a_killed_build_is_cleared(recipes: Path, tmp_path: Path, fake: FakeDebian) -> None:
    builder = make_builder(recipes, tmp_path, fake)
    ((_, digest, _),) = builder.plan("base")
    leftover = tmp_path / "cache" / f".build-base-{digest[:16]}-killed"
    (leftover / "rootfs").mkdir(parents=True)
    builder.build("base")
    assert not leftover.exists()
