"""Image recipes: the YAML model, loading with `extends` layering, and content hashing.

A recipe file `images/recipes/<name>.yaml` describes one image layer:

    name: switch                 # must match the file name
    extends: server              # parent layer (optional; a root recipe bootstraps Debian)
    suite: bookworm              # root recipes only (children inherit it)
    variant: minbase             # root recipes only (debootstrap --variant)
    packages: [openvswitch-switch]
    files: {/etc/foo.conf: files/foo.conf}      # dest in the image -> source relative to the recipe dir
    steps:
      - {name: configure, run: "echo hi > /etc/hi"}          # shell, run inside the image's chroot
      - {name: build-aca, run: "...", needs: aca_source}     # only when the input is given
    services: {ovsdb-server: "exec ovsdb-server ..."}        # supervised by the image's init (runit)
    start: "/usr/local/bin/hello"                            # optional one-shot boot command
    properties: {description: "..."}                         # LXD image properties

A step with `needs: X` sees the input's content at `/run/distrilab/inputs/X` inside the chroot
(`INPUT_MOUNT`). Layers are built in order root -> leaf; each layer is cached on its own, keyed by a
hash over its parent's hash, its canonical recipe, the bytes of every file it copies and the content
of every input its steps use (see `layer_hash`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdk.errors import ImageBuildError, LabFileError
from cdk.lab_source import DocumentKind, LabSource, Problems, read_yaml_source

#: the recipes shipped with distrilab
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
#: where a step that `needs` an input finds it inside the chroot
INPUT_MOUNT = "/run/distrilab/inputs"
#: bump when the builder's output format changes, so every cached layer is rebuilt
BUILDER_FORMAT = "1"

NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
ROOT_ONLY_FIELDS = ("suite", "variant")
ALLOWED_FIELDS = (
    "name",
    "extends",
    "suite",
    "variant",
    "packages",
    "files",
    "steps",
    "services",
    "start",
    "properties",
)
STEP_FIELDS = ("name", "run", "needs")
DEFAULT_SUITE = "bookworm"
DEFAULT_VARIANT = "minbase"
#: directory names skipped when hashing a directory input (VCS metadata, build output)
HASH_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})


@dataclass(frozen=True)
class Step:
    name: str
    run: str
    needs: str | None = None


@dataclass(frozen=True)
class Recipe:
    """One layer, as written in its file (nothing inherited is copied in)."""

    name: str
    path: Path  # the recipe file
    extends: str | None = None
    suite: str | None = None
    variant: str | None = None
    packages: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # dest -> source (relative to the recipe dir)
    steps: tuple[Step, ...] = ()
    services: dict[str, str] = field(default_factory=dict)
    start: str | None = None
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.path.parent

    def source_of(self, dest: str) -> Path:
        return (self.directory / self.files[dest]).resolve()

    def needed_inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.needs for s in self.steps if s.needs))

    def canonical(self) -> dict[str, Any]:
        """The recipe's meaning as plain data: what the hash covers (not its path or formatting)."""
        return {
            "name": self.name,
            "extends": self.extends,
            "suite": self.suite,
            "variant": self.variant,
            "packages": sorted(self.packages),
            "files": dict(sorted(self.files.items())),
            "steps": [{"name": s.name, "run": s.run, "needs": s.needs} for s in self.steps],
            "services": dict(sorted(self.services.items())),
            "start": self.start,
            "properties": dict(sorted(self.properties.items())),
        }


@dataclass(frozen=True)
class Chain:
    """A recipe with all its ancestors, root first; the merged view is what the image holds."""

    layers: tuple[Recipe, ...]

    @property
    def leaf(self) -> Recipe:
        return self.layers[-1]

    @property
    def root(self) -> Recipe:
        return self.layers[0]

    @property
    def name(self) -> str:
        return self.leaf.name

    @property
    def suite(self) -> str:
        return self.root.suite or DEFAULT_SUITE

    @property
    def variant(self) -> str:
        return self.root.variant or DEFAULT_VARIANT

    def services(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for layer in self.layers:
            merged.update(layer.services)
        return merged

    def start(self) -> str | None:
        for layer in reversed(self.layers):
            if layer.start:
                return layer.start
        return None

    def properties(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for layer in self.layers:
            merged.update(layer.properties)
        return merged

    def needed_inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for layer in self.layers for n in layer.needed_inputs()))


# ---------------------------------------------------------------- loading


#: how errors name a recipe file (cdk/lab_source.py reads it as it reads a lab file)
RECIPE_FILE = DocumentKind("image recipe", "recipe fields", "the shipped recipes are in images/recipes/",
                           "images/recipes/server.yaml", "(recipe)")


def _str_map(problems: Problems, key: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        problems.add((key,), "must be a mapping of strings to strings", value)
        return {}
    return dict(value)


def parse_recipe(source: LabSource) -> Recipe:
    """Validate one recipe document: every problem at once, each naming the file, its line, the
    field and the bad value (LabFileError)."""
    path, data = Path(source.file), source.data
    problems = Problems(source)
    for key in sorted(set(data) - set(ALLOWED_FIELDS)):
        problems.add((key,), "unknown field", hint=f"allowed fields: {', '.join(ALLOWED_FIELDS)}")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.add(("name",), "must match [a-z][a-z0-9-]*", name)
    elif name != path.stem:
        problems.add(("name",), f"must equal the file name '{path.stem}'", name)
    extends = data.get("extends")
    if extends is not None and (not isinstance(extends, str) or not NAME_RE.match(extends)):
        problems.add(("extends",), "must be a recipe name", extends)
    for key in ROOT_ONLY_FIELDS:
        if extends is not None and data.get(key) is not None:
            problems.add((key,), f"only a root recipe sets '{key}'; it is inherited from '{extends}'",
                         data[key])
        elif data.get(key) is not None and not isinstance(data[key], str):
            problems.add((key,), "must be a string", data[key])
    packages = data.get("packages") or []
    if not isinstance(packages, list) or not all(isinstance(p, str) and p for p in packages):
        problems.add(("packages",), "must be a list of Debian package names", packages)
    files = _str_map(problems, "files", data.get("files"))
    for dest, file in files.items():
        if not dest.startswith("/"):
            problems.add(("files", dest), "destination must be an absolute path in the image", dest)
        if not (path.parent / file).is_file():
            problems.add(("files", dest), f"source file not found in {path.parent}", file)
    steps = _parse_steps(problems, data.get("steps"))
    services = _str_map(problems, "services", data.get("services"))
    for svc in services:
        if not NAME_RE.match(svc):
            problems.add(("services", svc), "service names must match [a-z][a-z0-9-]*", svc)
    start = data.get("start")
    if start is not None and not isinstance(start, str):
        problems.add(("start",), "must be a shell command (string)", start)
    properties = _str_map(problems, "properties", data.get("properties"))
    problems.raise_if_any()
    return Recipe(
        name=name,  # type: ignore[arg-type]
        path=path.resolve(),
        extends=extends,
        suite=data.get("suite"),
        variant=data.get("variant"),
        packages=tuple(packages),
        files=files,
        steps=steps,
        services=services,
        start=start,
        properties=properties,
    )


def _parse_steps(problems: Problems, value: object) -> tuple[Step, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(("steps",), "must be a list of {name, run, needs?}", value)
        return ()
    steps: list[Step] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            problems.add(("steps", i), "must be a mapping with 'name' and 'run'", item)
            continue
        for key in sorted(set(item) - set(STEP_FIELDS)):
            problems.add(("steps", i, key), "unknown field", hint=f"allowed: {', '.join(STEP_FIELDS)}")
        valid = True
        for key in ("name", "run"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                problems.add(("steps", i, key), "must be a non-empty string", item.get(key))
                valid = False
        needs = item.get("needs")
        if needs is not None and (not isinstance(needs, str) or not re.match(r"^[a-z][a-z0-9_]*$", needs)):
            problems.add(("steps", i, "needs"), "must be an input name like 'aca_source'", needs)
        if valid:
            steps.append(Step(item["name"], item["run"], needs))
    names = [s.name for s in steps]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.add(("steps",), "step names must be unique", dup)
    return tuple(steps)


class RecipeBook:
    """Finds recipes by name in one or more directories (earlier directories win)."""

    def __init__(self, dirs: Iterable[Path] = (RECIPES_DIR,)):
        self.dirs = tuple(Path(d) for d in dirs)
        self._cache: dict[str, Recipe] = {}

    def names(self) -> list[str]:
        found = {p.stem for d in self.dirs if d.is_dir() for p in d.glob("*.yaml")}
        return sorted(found)

    def get(self, name: str) -> Recipe:
        if name in self._cache:
            return self._cache[name]
        for d in self.dirs:
            path = d / f"{name}.yaml"
            if path.is_file():
                try:
                    recipe = parse_recipe(read_yaml_source(path, RECIPE_FILE))
                except LabFileError as err:  # an image build error, located like a lab file's
                    raise ImageBuildError(str(err)) from err
                self._cache[name] = recipe
                return recipe
        raise ImageBuildError(
            f"unknown image recipe '{name}' (searched {', '.join(str(d) for d in self.dirs)})",
            hint=f"known recipes: {', '.join(self.names()) or 'none'}",
        )

    def chain(self, name: str) -> Chain:
        """The recipe and its ancestors, root first; unknown parents and cycles are errors."""
        layers: list[Recipe] = []
        seen: list[str] = []
        current: str | None = name
        while current is not None:
            if current in seen:
                cycle = " -> ".join([*seen, current])
                raise ImageBuildError(
                    f"{self.get(seen[-1]).path}: extends: recipes extend each other in a cycle ({cycle})",
                    hint="one recipe of the cycle must be a root recipe without 'extends'",
                )
            seen.append(current)
            if layers and not self._exists(current):
                raise ImageBuildError(
                    f"{layers[-1].path}: extends: unknown parent recipe ({current!r})",
                    hint=f"known recipes: {', '.join(self.names())}",
                )
            recipe = self.get(current)
            layers.append(recipe)
            current = recipe.extends
        return Chain(tuple(reversed(layers)))

    def _exists(self, name: str) -> bool:
        return any((d / f"{name}.yaml").is_file() for d in self.dirs)


# ---------------------------------------------------------------- hashing


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def content_hash(path: Path) -> str:
    """sha256 over a file's bytes, or over a directory's sorted relative paths, modes and bytes.

    Symlinks hash as their target text (not followed); VCS metadata dirs are skipped.
    """
    path = Path(path)
    if path.is_symlink():
        return _sha(b"link", os.readlink(path).encode())
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    if not path.is_dir():
        raise ImageBuildError(f"input {path} does not exist", hint="pass an existing file or directory")
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in HASH_SKIP_DIRS)
        for fname in sorted(files):
            full = Path(root) / fname
            rel = full.relative_to(path).as_posix()
            mode = "x" if os.access(full, os.X_OK) and not full.is_symlink() else "-"
            h.update(f"{rel}\0{mode}\0{content_hash(full)}\n".encode())
    return h.hexdigest()


def layer_hash(
    parent_hash: str | None,
    recipe: Recipe,
    inputs: Mapping[str, Path],
    skipped: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> str:
    """The content address of one layer.

    Covers the parent's hash (so a parent change changes every child), the canonical recipe, the
    bytes of each copied file, the content of each input this layer's steps use, the names of
    steps skipped for a missing input, and `extra` (builder settings such as the init scripts).
    """
    doc = {
        "format": BUILDER_FORMAT,
        "parent": parent_hash,
        "recipe": recipe.canonical(),
        "files": {dest: content_hash(recipe.source_of(dest)) for dest in sorted(recipe.files)},
        "inputs": {n: content_hash(inputs[n]) for n in recipe.needed_inputs() if n in inputs},
        "skipped": sorted(skipped),
        "extra": dict(sorted((extra or {}).items())),
    }
    return _sha(json.dumps(doc, sort_keys=True).encode())
