"""The one list of programs (cdk/programs.py) against the code: every program the code runs is
on it, with its package; image programs come from the image recipes; the installer reads it."""

from __future__ import annotations

import ast
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdk import programs
from images.recipe import RecipeBook

REPO_ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("cdk", "stacks", "modules", "images", "bench", "tests")
#: functions that take an argv list first
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "execvpe", "execvp"}
ARGV_NAMES = {"argv", "cmd", "command"}
SHELL_SEPARATORS = {"&&", "||", ";", "|", "(", ")"}


def argv_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, program) for each call that runs a literal argv, including `sh -c '<literal>'`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.List, ast.Tuple)):
            # `argv = [...]` / `cmd = [...]`, run a line later
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            head = node.value.elts[0] if node.value.elts else None
            literal = isinstance(head, ast.Constant) and isinstance(head.value, str)
            if literal and any(n in ARGV_NAMES for n in names):
                yield node.lineno, head.value  # type: ignore[union-attr]
            continue
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        first = node.args[0]
        if name == "which" and isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield node.lineno, first.value
        if name not in RUNNERS or not isinstance(first, (ast.List, ast.Tuple)) or not first.elts:
            continue
        head = first.elts[0]
        if not (isinstance(head, ast.Constant) and isinstance(head.value, str)):
            continue
        yield node.lineno, head.value
        words = [e.value for e in first.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        if head.value == "sh" and words[1:2] == ["-c"] and len(words) > 2:
            yield from ((node.lineno, word) for word in shell_commands(words[2]))


def shell_commands(script: str) -> Iterator[str]:
    """The command words of a literal shell line (first word, and each after a separator)."""
    try:
        tokens = shlex.split(script.replace(";", " ; ").replace("&&", " && ").replace("|", " | "))
    except ValueError:
        return
    keywords = {"if", "then", "fi", "for", "do", "done", "true", "exec", "!"}
    expect = True
    for token in tokens:
        command = ("=" not in token and not token.startswith(("$", "-", "["))
                   and token not in keywords | SHELL_SEPARATORS)
        if expect and command:
            yield token
            expect = False
        if token in SHELL_SEPARATORS:
            expect = True


def scanned_files() -> list[Path]:
    return sorted(f for d in SCANNED for f in (REPO_ROOT / d).rglob("*.py") if "fixtures" not in f.parts)


def found_programs() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in scanned_files():
        for line, name in argv_literals(ast.parse(path.read_text(), str(path))):
            if "/" in name:  # an absolute or relative path: a file the code ships or built
                continue
            found.setdefault(name, []).append(f"{path.relative_to(REPO_ROOT)}:{line}")
    return found


def test_the_scan_sees_the_programs_the_code_is_known_to_run() -> None:
    found = found_programs()
    # a scan that finds nothing would pass the next test vacuously
    assert {"ip", "nsenter", "modprobe", "debootstrap", "ssh", "lxc", "terraform", "sysctl"} <= set(found)


def test_every_program_the_code_runs_is_on_the_list() -> None:
    listed = {p.name for p in programs.PROGRAMS} | {"python3", "python"}
    unlisted = {name: where for name, where in found_programs().items() if name not in listed}
    assert not unlisted, (
        "programs run by the code but missing from cdk/programs.py (add each with its Debian "
        f"package): {unlisted}"
    )


def test_the_scan_fails_on_an_unlisted_program() -> None:
    tree = ast.parse("import subprocess\nsubprocess.run(['frobnicate', '-x'])\n"
                     "shell.run(['sh', '-c', 'mkdir -p /x && quux --y || zork'])\n")
    assert [name for _, name in argv_literals(tree)] == ["frobnicate", "sh", "mkdir", "quux", "zork"]


IMAGE_PROGRAMS = [p for p in programs.PROGRAMS if p.group == "image"]


@pytest.mark.parametrize("program", IMAGE_PROGRAMS, ids=lambda p: p.name)
def test_image_programs_come_from_a_recipe(program: programs.Program) -> None:
    book = RecipeBook()
    packages = {pkg for name in book.names() for layer in book.chain(name).layers for pkg in layer.packages}
    assert program.package in packages, f"{program.name}: no recipe installs {program.package}"


def test_every_program_has_a_package_or_says_where_it_comes_from() -> None:
    for p in programs.PROGRAMS:
        assert p.group in programs.GROUPS
        assert p.package or p.other_source, p
    names = [p.name for p in programs.PROGRAMS if p.group != "image"]
    assert len(names) == len(set(names)), "a program listed twice"


def test_setup_reads_the_list() -> None:
    setup = (REPO_ROOT / ".ci" / "setup").read_text()
    assert "python3 -m cdk.programs probe-script host tool dev" in setup
    assert "apt-get install" in setup and "lxd" not in setup.split("apt_install", 1)[0]


def test_probe_script_names_the_packages_of_missing_programs(tmp_path: Path) -> None:
    # a PATH with only sh, awk and dpkg-query: everything else counts as missing
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "awk", "grep"):
        (bin_dir / tool).symlink_to(subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                                                   text=True, check=True).stdout.strip())
    script = programs.probe_script(["host"]).replace(f':{programs.SYSTEM_PATH}"', '"')
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env={"PATH": str(bin_dir)})
    wanted = out.stdout.split()
    assert {"kmod", "dnsmasq-base", "lxd", "iproute2", "procps"} <= set(wanted)
    assert len(wanted) == len(set(wanted)), "a package named twice"
    assert "systemd" not in wanted  # systemctl is never installed by distrilab


def test_missing_names_program_and_package() -> None:
    absent = programs.missing(["host"], which=lambda name, path=None: None if name == "modprobe" else "/x")
    assert [(p.name, p.package) for p in absent] == [("modprobe", "kmod")]
