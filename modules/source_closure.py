"""The project's own files that a module needs, found by following its imports.

What runs away from the checkout (the test controller inside its container) gets exactly these
files: a hand-kept list went stale the day a loadgen module started importing a new `cdk` module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

#: the top-level packages that belong to this project (everything else comes from the image)
PROJECT_PACKAGES = ("cdk", "modules", "stacks")


def _imported_names(path: Path) -> set[str]:
    """Every absolute module name `path` imports, with `from a.b import c` also giving `a.b.c`
    (c may be a submodule; the caller keeps the names that exist)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(root: Path, name: str) -> list[Path]:
    """The module's file and the `__init__.py` of every package above it (Python runs them all)."""
    parts = name.split(".")
    files = [_module_file(root, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    return [f for f in files if f is not None]


def source_closure(root: Path, entries: Iterable[str]) -> list[Path]:
    """The files under `root` that importing `entries` (module names) runs, sorted."""
    found: set[Path] = set()
    pending = [f for name in entries for f in _with_parents(root, name)]
    missing = [name for name in entries if _module_file(root, name) is None]
    if missing:
        raise ValueError(f"no module {', '.join(missing)} under {root}")
    while pending:
        path = pending.pop()
        if path in found:
            continue
        found.add(path)
        for name in _imported_names(path):
            if name.split(".")[0] in PROJECT_PACKAGES:
                pending += _with_parents(root, name)
    return sorted(found)
