"""The `ignite_dist` input is checked before an image build starts: Java 17 needs 2.13, and Alcor's
transactions on atomic caches need 2.15 or older (images/ignite.py cites the sources)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from cdk.errors import ImageBuildError
from images.builder import ImageBuilder
from images.ignite import ignite_dist_problems, version_of
from images.recipe import RECIPES_DIR, RecipeBook


def dist(tmp_path: Path, version: str, as_zip: bool = False) -> Path:
    root = tmp_path / f"apache-ignite-{version}-bin"
    (root / "libs").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "libs" / f"ignite-core-{version}.jar").write_bytes(b"PK")
    (root / "bin" / "ignite.sh").write_text("#!/bin/sh\n")
    if not as_zip:
        return root
    archive = tmp_path / f"{root.name}.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in root.rglob("*"):
            out.write(path, path.relative_to(tmp_path))
    return archive


@pytest.mark.parametrize("as_zip", [False, True])
def test_versions_that_serve_alcor_on_java_17(tmp_path: Path, as_zip: bool) -> None:
    assert version_of(dist(tmp_path, "2.15.0", as_zip)) == (2, 15, 0)
    assert ignite_dist_problems(dist(tmp_path / "a", "2.13.0", as_zip)) == []
    assert ignite_dist_problems(dist(tmp_path / "b", "2.15.0", as_zip)) == []
    [old] = ignite_dist_problems(dist(tmp_path / "c", "2.10.0", as_zip))
    assert "Java 17" in old
    [new] = ignite_dist_problems(dist(tmp_path / "d", "2.16.0", as_zip))
    assert "atomic caches inside transactions" in new and "VxlanRangeRepository" in new
    assert "not an Apache Ignite" in ignite_dist_problems(tmp_path)[0]


def test_a_build_with_a_refused_distribution_stops_before_it_starts(tmp_path: Path) -> None:
    builder = ImageBuilder(book=RecipeBook([RECIPES_DIR]), cache=tmp_path / "cache")
    with pytest.raises(ImageBuildError) as info:
        builder.build("ignite", inputs={"ignite_dist": dist(tmp_path, "2.16.0"), "alcor_jars": tmp_path})
    assert "input ignite_dist: Ignite 2.16.0" in str(info.value) and "2.13.x to 2.15.x" in str(info.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.tar*"))


def test_the_node_allows_atomic_operations_in_transactions_on_2_15_only(tmp_path: Path) -> None:
    script = RECIPES_DIR / "files" / "ignite" / "ignite-node"
    config = tmp_path / "alcor-ignite.xml"
    config.write_text("<beans/>")
    for version, flagged in (("2.15.0", True), ("2.14.0", False)):
        home = dist(tmp_path / version, version)
        (home / "bin" / "ignite.sh").chmod(0o755)
        env = tmp_path / f"{version}.env"
        env.write_text(f"IGNITE_HOME={home}\nIGNITE_CONFIG={config}\n")
        out = subprocess.run(["sh", str(script), "--dry-run"], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "IGNITE_ENV_FILE": str(env)}, check=True).stdout
        assert ("-DIGNITE_ALLOW_ATOMIC_OPS_IN_TX=true" in out) == flagged, out
