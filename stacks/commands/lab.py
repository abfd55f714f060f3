"""The lab lifecycle: validate, synth, plan, up, down.

`up`/`down` run terraform on the same stack folder and state file as `npx cdktf deploy/destroy`.
cdktn (a node process behind jsii) is imported only by the commands that synthesize.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from stacks.json_output import emit
from stacks.loading import load

if TYPE_CHECKING:
    from cdk.model import Lab
    from stacks.drift import Drift

console = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    def lab_command(name: str, help: str, handler: object) -> argparse.ArgumentParser:
        p = subparsers.add_parser(name, help=help, description=help)
        p.add_argument("lab", type=Path, help="lab file (labs/*.yaml, or a .py file defining LAB)")
        p.set_defaults(func=handler)
        return p

    p = lab_command("validate", "check a lab file and show what it expands to", validate)
    p.add_argument("--json", action="store_true", help="print what the lab expands to as JSON")
    p.add_argument("--save-placement", type=Path, metavar="FILE",
                   help="write the nodes' placement on hosts (YAML, or JSON for *.json) for "
                   "placement: {strategy: file, file: FILE} to replay")
    p = lab_command("synth", "write the lab's terraform configuration into cdktf.out/", synth)
    p.add_argument("--outdir", type=Path, default=None, help="instead of cdktf.out (tests)")
    p = lab_command("plan", "show which stage on which host would change", plan)
    p.add_argument("--json", action="store_true", help="print the changes and drift as JSON")
    p = lab_command("up", "deploy the lab (synth, terraform init and apply), then check it", up)
    p.add_argument("--no-check", action="store_true", help="skip 'distrilab check' at the end")
    p.add_argument("--only", metavar="SELECTOR",
                   help="recreate just these nodes and re-plug their links (names, globs such as leaf-*, "
                   "roles, pod=N, rack=SW, host=H; comma-separated); every other link stays up")
    p.add_argument("--limit", metavar="SELECTOR",
                   help="deploy only these nodes and the links among them (same selectors); later commands "
                   "work on that part until an up without --limit")
    p.add_argument("--ignore-memory", action="store_true",
                   help="deploy even when the lab's estimated memory exceeds what this host has free")
    down_parser = lab_command("down", "destroy the lab: everything carrying its label", down)
    down_parser.add_argument("--sweep", action="store_true",
                             help="also delete what carries the lab's label but no state of this checkout "
                             "holds (a lost state, or the same lab brought up from another checkout)")
    for parser in (p, down_parser):
        parser.add_argument("--workers", type=positive_int, metavar="N",
                            help="parallel actions per stage and host for this run (default: the lab's "
                            "lxd.max_workers, else this machine's vCPU count; a host's max_workers caps it)")


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


@contextmanager
def workers_for_run(args: argparse.Namespace) -> Iterator[None]:
    """`--workers N` reaches every reconciler through terraform's environment (not the specs:
    concurrency changes no desired state, so it re-runs no stage); for this command only."""
    from modules.reconcile import WORKERS_ENV

    before = os.environ.get(WORKERS_ENV)
    if getattr(args, "workers", None):
        os.environ[WORKERS_ENV] = str(args.workers)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(WORKERS_ENV, None)
        else:
            os.environ[WORKERS_ENV] = before


def validate(args: argparse.Namespace) -> int:
    lab = load(args.lab)
    body = validation_summary(lab)
    if args.save_placement:
        from cdk.placement import placement_text

        args.save_placement.write_text(placement_text(lab.placement, args.save_placement.suffix))
    if args.json:
        emit("validate", body)
        return 0
    counts = ", ".join(f"{n} {role}" for role, n in sorted(body["roles"].items()))
    console.print(
        f"[green]ok[/] {escape(str(args.lab))}: lab [bold]{lab.name}[/], {body['nodes']} nodes "
        f"({counts}), {body['links']} links, {len(lab.hosts)} host(s), "
        f"{lab.placement.cross_host_links} cross-host links",
        highlight=False,
    )
    return 0


def validation_summary(lab: Lab) -> dict[str, Any]:
    """What a lab file expands to (docs/schemas/distrilab-validate.v1.json)."""
    from stacks.commands.inspect import spread

    roles: dict[str, int] = {}
    for node in lab.topology.nodes:
        roles[node.role] = roles.get(node.role, 0) + 1
    placement = spread(lab)
    return {
        "lab": lab.name, "source": lab.source, "nodes": len(lab.topology.nodes), "roles": roles,
        "links": len(lab.topology.links),
        "hosts": [{"name": h.name, "kind": h.kind, "nodes": placement["nodes_per_host"][h.name]}
                  for h in lab.hosts],
        "placement": placement,
        "fabric": {"mode": lab.fabric.mode, "bridge": lab.fabric.bridge},
        "pools": dict(lab.addressing.pools),
    }


def _synth(args: argparse.Namespace, check_host_routes: bool = True,
           for_up: bool = False):  # -> stacks.deploy.Synthesized
    """The lab synthesized: as its last `up` deployed it, or for `up` what it deploys now (its
    pools claimed, its --limit recorded)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        # importing cdktn starts jsii's node process and loads the library (~1 s, mostly spent
        # in node): overlap it with loading the lab, which is Python work
        importing = pool.submit(importlib.import_module, "stacks.deploy")
        lab = load(args.lab, check_host_routes, claim_pools=for_up, whole=for_up)
        if for_up:
            from stacks.node_scope import scope_for_up
            from stacks.paths import Paths

            lab = scope_for_up(lab, args.limit, Paths.for_repo(), args.only)
        deploy = importing.result()
    outdir = getattr(args, "outdir", None)
    synthesized = deploy.synth(lab, outdir) if outdir else deploy.synth(lab)
    return synthesized


def synth(args: argparse.Namespace) -> int:
    synthesized = _synth(args)
    stages = sorted({stage for stage, _ in synthesized.resources.values()})
    console.print(
        f"[green]synthesized[/] {synthesized.lab.name}: {len(synthesized.resources)} resources "
        f"(stages: {', '.join(stages)}) -> {synthesized.stack_dir}/cdk.tf.json",
        highlight=False,
    )
    return 0


def plan(args: argparse.Namespace) -> int:
    from stacks import deploy
    from stacks.progress import plan_table

    synthesized = ready(args, _synth(args))
    drifts = deploy.drift(synthesized)
    result = deploy.plan(synthesized, replace=_report_drift(drifts, quiet=args.json))
    if args.json:
        emit("plan", {
            "lab": synthesized.lab.name, "changed": result.changed,
            "drift": [{"stage": d.stage, "host": d.host, "summary": d.summary, "address": d.address}
                      for d in drifts],
            "changes": [{"address": c.address, "stage": stage, "host": host, "action": c.action,
                         "reason": c.reason}
                        for c in result.changes for stage, host in [synthesized.label(c.address)]],
        })
        return 0
    if not result.changed:
        console.print(f"[green]no changes[/]: {synthesized.lab.name} matches its configuration")
        return 0
    console.print(plan_table(synthesized, result))
    return 0


def up(args: argparse.Namespace) -> int:
    with workers_for_run(args):
        return _up(args)


def _up(args: argparse.Namespace) -> int:
    from cdk.errors import DistrilabError
    from stacks import deploy
    from stacks.clashes import resources_in_state
    from stacks.cli import has_subcommand
    from stacks.lab_stack import state_location
    from stacks.node_scope import refuse_pending_changes, remove_for_recreation
    from stacks.paths import Paths
    from stacks.pool_records import forget_new_claim, read_records
    from stacks.progress import ApplyProgress

    claimed_before = set(read_records(Paths.for_repo()))
    synthesized = _synth(args, for_up=True)
    try:
        synthesized = ready(args, synthesized)
    except DistrilabError:
        # refused before anything was created: keep no claim this run made (a lab already up
        # keeps its own, even when this up is refused because another checkout deployed it)
        if not resources_in_state(synthesized):
            forget_new_claim(Paths.for_repo(), synthesized.lab.name, claimed_before)
        raise
    if args.only:
        refuse_pending_changes([(*synthesized.label(c.address), c.action)
                                for c in deploy.plan(synthesized).changes])
        recreated = remove_for_recreation(synthesized.lab, args.only)
        console.print(f"[yellow]recreate[/] {', '.join(recreated)}", highlight=False)
    drifted = _report_drift(deploy.drift(synthesized))
    with ApplyProgress(synthesized, console, title="up") as progress:
        result = deploy.apply(synthesized, progress.handle, replace=drifted)
    changed = len(result.completed)
    summary = f"{changed} resource(s) changed" if changed else "no changes (the lab matches its description)"
    console.print(
        f"[green]up[/] {synthesized.lab.name}: {summary}; "
        f"state {state_location(synthesized.lab, Paths.for_repo())}", highlight=False
    )
    if args.no_check or not has_subcommand(args.parser, "check"):
        return 0
    check_args = args.parser.parse_args(["check", str(args.lab)])
    check_args.parser = args.parser
    return int(check_args.func(check_args))


def ready(args: argparse.Namespace, synthesized: Any) -> Any:  # stacks.deploy.Synthesized
    """Before terraform touches anything: this machine has what it runs, and the lab's ssh hosts
    pass their pre-flight. When that read what a host holds for the first time (or it changed),
    the lab is synthesized again: its placement follows it."""
    from modules.host_preflight import preflight
    from modules.memory_fit import check_local_memory
    from stacks.clashes import require_no_clash

    require_programs(synthesized.lab)
    require_healthy_hosts(synthesized.lab)
    require_no_clash(synthesized)  # another lab's VXLAN ids or a same-named lab of another checkout
    if not getattr(args, "ignore_memory", False):  # (so does DISTRILAB_IGNORE_MEMORY=1)
        check_local_memory(synthesized.lab)  # a lab too large for this host: refused with numbers
    if preflight(synthesized.lab):  # ssh hosts: reachable, known, logged into, big enough
        synthesized = _synth(args)
        preflight(synthesized.lab)
    return synthesized


def require_healthy_hosts(lab: Lab) -> None:
    """Refuse to start when the doctor finds, on this machine, what would break the apply even
    after the cluster stage (no /dev/net/tun, a full storage pool); its advice names the fix.
    (ssh hosts get their own pre-flight: modules/host_preflight.py.)"""
    from cdk.errors import DistrilabError
    from cdk.stages.nodes import image_runs_ovs
    from modules.doctor import Needs, blockers
    from modules.host_shell import LocalShell, is_local

    tun = any(image_runs_ovs(lab, lab.image_of(node)) for node in lab.topology.nodes)
    found = [f for h in lab.hosts if is_local({"kind": h.kind})
             for f in blockers(LocalShell(h.name), Needs(len(lab.nodes_on(h.name)), lab.lxd.pool, tun))]
    if found:
        advice = "\n".join(f"  {f.host}: {f.check}: {f.detail} (fix: {f.fix})" for f in found)
        raise DistrilabError(f"this machine is not ready for lab {lab.name}:\n{advice}\n"
                             f"see: distrilab doctor --fix")


#: what this machine runs for a lab whose hosts are all remote (the cluster stage installs the
#: rest on them)
CONTROLLER_PROGRAMS = ("ssh", "ssh-keygen", "ssh-keyscan", "openssl")


def require_programs(lab: object) -> None:
    """Refuse, before anything is created, to run without a program the apply needs here; the
    error names each program and the Debian package that brings it (cdk/programs.py)."""
    from cdk.errors import DistrilabError
    from cdk.programs import missing
    from modules.host_shell import is_local

    local = any(is_local({"kind": h.kind}) for h in lab.hosts)  # type: ignore[attr-defined]
    gaps = [p for p in missing(["host", "tool"]) if local or p.name in CONTROLLER_PROGRAMS]
    if gaps:
        lines = "\n".join(f"  {p.name}: Debian package {p.package} ({p.why})" for p in gaps)
        packages = " ".join(sorted({p.package for p in gaps}))
        raise DistrilabError(
            f"this machine lacks programs distrilab runs:\n{lines}\n"
            f"  hint: run .ci/setup (or apt-get install {packages}); `distrilab doctor` lists them all"
        )


def _report_drift(drifts: list[Drift], quiet: bool = False) -> list[str]:
    """Print one line per drifted stage (on stderr when stdout carries JSON); the addresses to
    re-run with `-replace`."""
    for d in drifts:
        out = stderr if quiet else console
        out.print(f"[yellow]drift[/] {escape(f'{d.stage}@{d.host}: {d.summary}')}", highlight=False)
    return [d.address for d in drifts]


def down(args: argparse.Namespace) -> int:
    with workers_for_run(args):
        return _down(args)


def _down(args: argparse.Namespace) -> int:
    from stacks import deploy
    from stacks.leftovers import leftover_error, leftovers, sweep_leftovers
    from stacks.limits import clear_limit
    from stacks.paths import Paths
    from stacks.pool_records import forget
    from stacks.progress import ApplyProgress

    # a lab being torn down must not be held hostage by a route that appeared since it came up
    # (another lab or tool taking its range): destroy needs the lab's identity, not a free range
    synthesized = _synth(args, check_host_routes=False)
    with ApplyProgress(synthesized, console, title="down") as progress:
        result = deploy.apply(synthesized, progress.handle, destroy=True)
    lab = synthesized.lab
    swept = sweep_leftovers(lab) if args.sweep else 0
    console.print(f"[green]down[/] {lab.name}: {len(result.completed)} resource(s) destroyed"
                  + (f", {swept} labelled object(s) swept" if args.sweep else ""), highlight=False)
    if found := leftovers(lab):  # they still hold the lab's pools: its claim stays
        raise leftover_error(lab, found)
    forget(Paths.for_repo(), lab.name)  # its pools are free again
    clear_limit(Paths.for_repo(), lab.name)
    return 0
