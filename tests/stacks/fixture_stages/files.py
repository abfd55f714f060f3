"""A real reconciler over a folder: `<root>/<lab>/<stage>@<host>/<name>` files with given content.

Observe lists the folder, plan is pure, destroy removes only the stage's own folder content.
Set FAIL_ON=<file name> in the spec's files to make the apply of that file fail (error paths).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdk.errors import DistrilabError
from modules.reconcile import Action, Reconciler


@dataclass(frozen=True)
class FilesSpec:
    lab: str
    host: str
    stage: str
    root: str
    files: dict[str, str]
    max_workers: int | None = 2

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.lab / f"{self.stage}@{self.host}"


class Files(Reconciler[FilesSpec, dict[str, str]]):
    name = "files"

    def load_spec(self, data: dict[str, Any]) -> FilesSpec:
        try:
            return FilesSpec(
                data["lab"],
                data["host"],
                data["stage"],
                data["root"],
                dict(data["files"]),
                data["max_workers"] or 2,
            )
        except KeyError as err:
            raise DistrilabError(f"missing field {err}") from err

    def identity(self, spec: FilesSpec) -> tuple[str, str]:
        return spec.lab, f"{spec.stage}@{spec.host}"

    def empty_spec(self, spec: FilesSpec) -> FilesSpec:
        return FilesSpec(spec.lab, spec.host, spec.stage, spec.root, {}, spec.max_workers)

    def connect(self, spec: FilesSpec) -> Path:
        # what this run resolved for its parallelism (`up --workers N` reaches here through terraform)
        spec.folder.parent.mkdir(parents=True, exist_ok=True)
        spec.folder.with_name(f"{spec.folder.name}.workers").write_text(str(self.max_workers(spec)))
        return spec.folder

    def observe(self, client: Path, spec: FilesSpec) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(client.glob("*"))} if client.is_dir() else {}

    def plan(self, spec: FilesSpec, observed: dict[str, str]) -> list[Action]:
        actions = [Action("delete", n, "not desired") for n in sorted(set(observed) - set(spec.files))]
        for name, content in sorted(spec.files.items()):
            if name not in observed:
                actions.append(Action("create", name, "missing", data={"content": content}))
            elif observed[name] != content:
                actions.append(Action("update", name, "drift: content", data={"content": content}))
        return actions

    def execute_action(self, client: Path, spec: FilesSpec, action: Action) -> None:
        if action.target == spec.files.get("FAIL_ON"):
            raise RuntimeError(f"refusing to write {action.target} (FAIL_ON)")
        path = client / action.target
        if action.verb == "delete":
            path.unlink()
        else:
            client.mkdir(parents=True, exist_ok=True)
            path.write_text(action.data["content"])


if __name__ == "__main__":
    sys.exit(Files().main())
