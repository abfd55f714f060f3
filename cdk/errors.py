"""The project's exception hierarchy: user errors are DistrilabError; anything else is a bug."""

from __future__ import annotations

from dataclasses import dataclass

#: how a reconciler's output starts its final error report (modules/reconcile.py prints it, the
#: terraform runner finds it in a failing provisioner's output and shows it as the error)
ERROR_LINE_PREFIX = "error: "


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
        lines += [f"  - {action}: {err}" for action, err in _grouped(failures)]
        if hint:
            lines.append(f"  hint: {hint}")
        super().__init__("\n".join(lines))


#: failures with the same error shown one by one before the rest are counted (a full pool or a
#: failed template skips every node of a 1000-node lab: one line each would bury the cause)
SAME_ERROR_SHOWN = 2


def _grouped(failures: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`failures` in order; an error text more than SAME_ERROR_SHOWN + 1 actions share is shown
    for the first SAME_ERROR_SHOWN of them, then counted once."""
    counts: dict[str, int] = {}
    for _, err in failures:
        counts[err] = counts.get(err, 0) + 1
    seen: dict[str, int] = {}
    shown: list[tuple[str, str]] = []
    for action, err in failures:
        seen[err] = seen.get(err, 0) + 1
        if counts[err] <= SAME_ERROR_SHOWN + 1 or seen[err] <= SAME_ERROR_SHOWN:
            shown.append((action, err))
    for err, n in counts.items():
        if n > SAME_ERROR_SHOWN + 1:
            shown.append((f"and {n - SAME_ERROR_SHOWN} more action(s)", err))
    return shown


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
