"""The project's exception hierarchy: user errors are DistrilabError; anything else is a bug."""

from __future__ import annotations

from dataclasses import dataclass


class DistrilabError(Exception):
    """An error the user can act on; the CLI prints it without a traceback."""

    hint: str | None = None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a lab file, located precisely."""

    file: str  # "labs/default.yaml"
    field: str  # attribute path, "topology.spines"
    message: str  # "must be an integer between 1 and 64"
    value: object = None  # the bad value, shown in parentheses
    line: int | None = None  # 1-based line in the file, when known
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        got = "" if self.value is None else f" (got {self.value!r})"
        text = f"{where}: {self.field}: {self.message}{got}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class LabFileError(DistrilabError):
    """Every problem of one pipeline stage, reported at once."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def path(self) -> str:
        return self.problems[0].file if self.problems else ""


class ReconcileError(DistrilabError):
    """Some actions of a reconciler failed; `failures` lists (action, error text) for each."""

    def __init__(self, module: str, failures: list[tuple[str, str]], hint: str | None = None):
        self.module = module
        self.failures = failures
        self.hint = hint
        lines = [f"[{module}] {len(failures)} action(s) failed:"]
        lines += [f"  - {action}: {err}" for action, err in failures]
        if hint:
            lines.append(f"  hint: {hint}")
        super().__init__("\n".join(lines))


class ImageBuildError(DistrilabError):
    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))


class TerraformError(DistrilabError):
    """A terraform run failed; carries the diagnostics and any provisioner output."""

    def __init__(
        self,
        message: str,
        diagnostics: tuple[object, ...] = (),
        provisioner_output: dict[str, tuple[str, ...]] | None = None,
        hint: str | None = None,
    ):
        self.diagnostics = diagnostics  # stacks.terraform.Diagnostic, severity "error"
        self.provisioner_output = dict(provisioner_output or {})  # resource address -> lines
        self.hint = hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))
