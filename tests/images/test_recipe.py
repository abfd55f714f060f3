"""Recipe loading (located errors), `extends` chains, and content hashing of layers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdk.errors import ImageBuildError
from images.builder import ImageBuilder
from images.recipe import RECIPES_DIR, RecipeBook, content_hash


def write(dir_: Path, name: str, text: str) -> Path:
    path = dir_ / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def book_dir(tmp_path: Path) -> Path:
    d = tmp_path / "recipes"
    (d / "files").mkdir(parents=True)
    (d / "files" / "motd").write_text("hello\n")
    write(d, "base", "name: base\npackages: [procps]\nfiles: {/etc/motd: files/motd}\n")
    write(
        d, "child", "name: child\nextends: base\npackages: [iproute2]\nsteps:\n  - {name: one, run: 'true'}\n"
    )
    return d


def hashes(d: Path, name: str, inputs: dict[str, Path] | None = None, **kw: object) -> dict[str, str]:
    builder = ImageBuilder(book=RecipeBook([d]), cache=d.parent / "cache")
    return {layer.name: digest for layer, digest, _ in builder.plan(name, inputs, **kw)}  # type: ignore[arg-type]


# ---------------------------------------------------------------- loading errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: bad\npakages: [x]\n", "bad.yaml:2: pakages: unknown field"),
        ("name: other\n", "bad.yaml:1: name: must equal the file name 'bad' (got 'other')"),
        ("name: bad\npackages: procps\n", "bad.yaml:2: packages: must be a list of Debian package names"),
        ("name: bad\nfiles: {etc/x: files/x}\n", "destination must be an absolute path"),
        ("name: bad\nfiles: {/etc/x: nothere}\n", "source file not found"),
        ("name: bad\nsteps: [{name: a}]\n", "bad.yaml:2: steps[0].run: must be a non-empty string"),
        ("name: bad\nsteps: [{name: a, run: x, neds: y}]\n", "steps[0].neds: unknown field"),
        ("name: bad\nsteps: [{name: a, run: x}, {name: a, run: y}]\n", "step names must be unique (got 'a')"),
        ("name: bad\nextends: base\nsuite: trixie\n", "bad.yaml:3: suite: only a root recipe sets 'suite'"),
        ("name: bad\nservices: {Bad_Name: x}\n", "service names must match"),
        ("- just\n- a list\n", "bad.yaml: (recipe): must be a mapping of recipe fields"),
    ],
)
def test_bad_recipe_is_located(book_dir: Path, text: str, expected: str) -> None:
    write(book_dir, "bad", text)
    with pytest.raises(ImageBuildError, match=None) as err:
        RecipeBook([book_dir]).chain("bad")
    assert expected in str(err.value)


def test_every_problem_of_a_recipe_is_reported_at_once_with_its_line(book_dir: Path) -> None:
    write(book_dir, "bad", "name: bad\npackages: procps\nsteps:\n  - {name: a}\n"
                           "  - {name: b, run: x, neds: y}\nservices: {Bad_Name: x}\n")
    with pytest.raises(ImageBuildError) as err:
        RecipeBook([book_dir]).chain("bad")
    lines = [line.split(": ", 2)[:2] for line in str(err.value).splitlines() if not line.startswith("  hint")]
    assert [(where.rsplit(":", 1)[1], field) for where, field in lines] == [
        ("2", "packages"), ("4", "steps[0].run"), ("5", "steps[1].neds"), ("6", "services.Bad_Name")]


def test_unknown_parent_names_the_child_file(book_dir: Path) -> None:
    write(book_dir, "orphan", "name: orphan\nextends: nosuch\n")
    with pytest.raises(ImageBuildError) as err:
        RecipeBook([book_dir]).chain("orphan")
    assert "orphan.yaml: extends: unknown parent recipe ('nosuch')" in str(err.value)
    assert "known recipes: base, child, orphan" in str(err.value)


def test_cycle_is_reported_with_its_path(book_dir: Path) -> None:
    write(book_dir, "a", "name: a\nextends: b\n")
    write(book_dir, "b", "name: b\nextends: a\n")
    with pytest.raises(ImageBuildError) as err:
        RecipeBook([book_dir]).chain("a")
    assert "cycle (a -> b -> a)" in str(err.value)


def test_unknown_recipe_lists_known_ones(book_dir: Path) -> None:
    with pytest.raises(ImageBuildError) as err:
        RecipeBook([book_dir]).chain("nosuch")
    assert "unknown image recipe 'nosuch'" in str(err.value)
    assert "known recipes: base, child" in str(err.value)


def test_shipped_recipes_load_and_switch_extends_server() -> None:
    chain = RecipeBook().chain("switch")
    assert [layer.name for layer in chain.layers] == ["server", "switch"]
    assert chain.suite == "bookworm" and chain.variant == "minbase"
    assert {"runit", "tini", "iproute2", "iperf3"} <= set(chain.root.packages)
    assert set(chain.services()) == {"ovsdb-server", "ovs-vswitchd"}


# ---------------------------------------------------------------- hashing


def test_hash_is_stable_and_ignores_yaml_formatting(book_dir: Path) -> None:
    first = hashes(book_dir, "child")
    assert first == hashes(book_dir, "child")
    write(
        book_dir,
        "child",
        "# a comment\nsteps: [{run: 'true', name: one}]\npackages:\n  - iproute2\n"
        "extends: base\nname: child\n",
    )
    assert hashes(book_dir, "child") == first


def test_file_change_changes_the_layer_and_its_children(book_dir: Path) -> None:
    before = hashes(book_dir, "child")
    (book_dir / "files" / "motd").write_text("changed\n")
    after = hashes(book_dir, "child")
    assert after["base"] != before["base"]
    assert after["child"] != before["child"]


def test_package_change_in_the_child_keeps_the_parent(book_dir: Path) -> None:
    before = hashes(book_dir, "child")
    write(
        book_dir,
        "child",
        "name: child\nextends: base\npackages: [iproute2, ethtool]\nsteps:\n  - {name: one, run: 'true'}\n",
    )
    after = hashes(book_dir, "child")
    assert after["base"] == before["base"]
    assert after["child"] != before["child"]


def test_parent_change_changes_the_child(book_dir: Path) -> None:
    before = hashes(book_dir, "child")
    write(book_dir, "base", "name: base\npackages: [procps, less]\nfiles: {/etc/motd: files/motd}\n")
    after = hashes(book_dir, "child")
    assert after["base"] != before["base"] and after["child"] != before["child"]


def test_inputs_count_only_where_a_step_needs_them(book_dir: Path, tmp_path: Path) -> None:
    write(book_dir, "child", "name: child\nextends: base\nsteps:\n  - {name: build, run: make, needs: src}\n")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "main.c").write_text("int main(){}\n")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: x\n")
    first = hashes(book_dir, "child", {"src": src})
    (src / ".git" / "HEAD").write_text("ref: y\n")  # VCS metadata is not content
    assert hashes(book_dir, "child", {"src": src}) == first
    (src / "sub" / "main.c").write_text("int main(){return 1;}\n")
    second = hashes(book_dir, "child", {"src": src})
    assert second["base"] == first["base"] and second["child"] != first["child"]
    skipped = hashes(book_dir, "child", skip_missing=("src",))
    assert skipped["child"] not in (first["child"], second["child"])


def test_content_hash_covers_names_and_modes(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_text("x")
    h1 = content_hash(d)
    (d / "a").chmod(0o755)
    h2 = content_hash(d)
    (d / "a").rename(d / "b")
    h3 = content_hash(d)
    assert len({h1, h2, h3}) == 3


def test_shipped_recipe_hash_changes_with_the_init_script(tmp_path: Path) -> None:
    copy = tmp_path / "recipes"
    shutil.copytree(RECIPES_DIR, copy)
    before = hashes(copy, "switch")
    init = copy / "files" / "distrilab-init"
    init.write_text(init.read_text() + "\n# changed\n")
    after = hashes(copy, "switch")
    assert after["server"] != before["server"] and after["switch"] != before["switch"]
