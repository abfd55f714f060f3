"""Where distrilab's files live: the repo root, the venv interpreter, state and spec folders."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

#: the repository root: provisioners run there, with it on PYTHONPATH
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paths:
    """Where the stack's commands run and what they read and write (all absolute)."""

    repo: Path
    python: Path  # the venv interpreter provisioners start
    state_dir: Path  # reconciler generation records (--state-dir)
    specs_dir: Path  # durable, content-addressed spec store (one folder per lab inside)
    state_root: Path  # where terraform.<lab>.tfstate lives
    #: where distrilab runs terraform (a private copy of each lab's stack folder);
    #: None: `terraform/` beside the specs folder
    work_root: Path | None = None

    @classmethod
    def for_repo(cls, repo: Path = REPO_ROOT) -> Paths:
        repo = repo.resolve()
        venv_python = repo / ".venv" / "bin" / "python"
        # not resolved: a venv's python is a symlink and must be started through it
        python = venv_python if venv_python.exists() else Path(sys.executable)
        return cls(
            repo=repo,
            python=python,
            state_dir=repo / ".distrilab" / "state",
            specs_dir=repo / ".distrilab" / "specs",
            state_root=repo,
        )

    def workdir(self, lab: str) -> Path:
        return (self.work_root or self.specs_dir.parent / "terraform") / lab

    def state_file(self, lab: str) -> Path:
        """Terraform state: where `cdktf deploy` keeps it by default (run from the repo root)."""
        return self.state_root / f"terraform.{lab}.tfstate"

    def last_check(self, lab: str) -> Path:
        """The last `distrilab check` report of a lab (its --json form; `serve` shows it)."""
        return self.specs_dir.parent / "checks" / f"{lab}.json"
