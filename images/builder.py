"""Build recipe chains into cached root filesystems and pack them as LXD images.

Layout of the cache (`~/.cache/distrilab/images/`, env DISTRILAB_CACHE overrides):

    <name>-<hash>/rootfs/          the layer's root filesystem (a child starts from a reflink/copy of it)
    <name>-<hash>/build.json       manifest: hash, chain, properties, skipped steps, timings
    <name>-<hash>/metadata.yaml    LXD image metadata; templates/ the LXD file templates
    <name>-<hash>/image.tar.zst    the unified LXD image tarball (packed on first import)

A layer directory exists only once complete (built under a temporary name, then renamed), so a
crashed build never leaves a half layer that later counts as a cache hit.

The builder never bootstraps or chroots by itself: it takes a `Bootstrapper` and a `ChrootRunner`,
so unit tests inject fakes and only the e2e tests debootstrap.

Image contract with the init (`images/recipes/files/distrilab-init`): services become runit service
directories `/etc/service/<name>/run`; `start` becomes `/etc/distrilab/start`; executable hooks in
`/etc/distrilab/boot.d/` run at every boot before services start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from cdk.errors import ImageBuildError
from images.ignite import IGNITE_DIST, ignite_dist_problems
from images.ignite import SUPPORTED as IGNITE_SUPPORTED
from images.recipe import INPUT_MOUNT, Chain, Recipe, RecipeBook, layer_hash

log = logging.getLogger(__name__)

MANIFEST = "build.json"
TARBALL = "image.tar.zst"
SERVICE_DIR = "/etc/service"
START_FILE = "/etc/distrilab/start"
BOOT_HOOKS_DIR = "/etc/distrilab/boot.d"
#: blocks daemons from starting inside the chroot while packages install (Debian policy-rc.d)
POLICY_RC_D = "/usr/sbin/policy-rc.d"


def cache_dir() -> Path:
    """The image cache directory: $DISTRILAB_CACHE, else ~/.cache/distrilab/images."""
    env = os.environ.get("DISTRILAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "distrilab" / "images"


# ---------------------------------------------------------------- injected runners


class Bootstrapper(Protocol):
    def __call__(self, rootfs: Path, suite: str, variant: str, mirror: str) -> None:
        """Create a fresh Debian root filesystem in `rootfs` (which does not exist yet)."""


class ChrootRunner(Protocol):
    def __call__(self, rootfs: Path, script: str, binds: Mapping[str, Path]) -> None:
        """Run `script` with /bin/sh -e inside `rootfs`; `binds` maps chroot paths to host paths."""


def debootstrap(rootfs: Path, suite: str, variant: str, mirror: str) -> None:
    """The real bootstrapper: `debootstrap --variant=<variant> <suite> <rootfs> <mirror>`."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed", hint="apt-get install -y debootstrap")
    # in a private mount namespace: the /proc and /sys debootstrap mounts vanish even if it fails
    _run(
        ["unshare", "--mount", "--propagation", "private",
         "debootstrap", f"--variant={variant}", suite, str(rootfs), mirror],
        what=f"debootstrap {suite}",
    )


def chroot_run(rootfs: Path, script: str, binds: Mapping[str, Path]) -> None:
    """The real runner: a private mount namespace with /proc, /sys, /dev and the binds, then chroot.

    Mounts live in a throwaway namespace (`unshare --mount`), so nothing stays mounted on the host
    even when a step fails or the build is killed.
    """
    script_path = rootfs / "tmp" / f"distrilab-step-{os.getpid()}.sh"
    script_path.parent.mkdir(parents=True, exist_ok=True)
    script_path.write_text(script)
    root = shlex.quote(str(rootfs))
    lines = [
        "set -e",
        f"mount -t proc proc {root}/proc",
        f"mount -t sysfs sysfs {root}/sys",
        f"mount --rbind /dev {root}/dev",
        # name resolution for apt inside the chroot, without writing the host's config into the image
        f"if [ -f /etc/resolv.conf ]; then touch {root}/etc/resolv.conf; "
        f"mount --bind /etc/resolv.conf {root}/etc/resolv.conf; "
        f"mount -o remount,bind,ro {root}/etc/resolv.conf; fi",
    ]
    for target, source in sorted(binds.items()):
        dest = shlex.quote(str(rootfs) + target)
        make = f"mkdir -p {dest}" if Path(source).is_dir() else f"mkdir -p $(dirname {dest}); touch {dest}"
        lines += [make, f"mount --bind {shlex.quote(str(source))} {dest}", f"mount -o remount,bind,ro {dest}"]
    inner = f"/tmp/{script_path.name}"
    lines.append(
        f"exec chroot {root} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "
        f"LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive /bin/sh -e {inner}"
    )
    try:
        _run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines)],
            what="chroot step",
        )
    finally:
        script_path.unlink(missing_ok=True)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")


# ---------------------------------------------------------------- mirror


def system_mirror(suite: str = "bookworm", root: Path = Path("/")) -> str:
    """The Debian mirror this machine's apt uses for `suite` (deb822 .sources first, then .list).

    Entries for other suites (security, updates) and third-party repositories are ignored: the
    entry must carry `suite` itself and component `main`.
    """
    apt = root / "etc" / "apt"
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for uri in _deb822_uris(path.read_text(), suite):
            return uri
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        if path.is_file():
            for uri in _one_line_uris(path.read_text(), suite):
                return uri
    raise ImageBuildError(
        f"no Debian mirror for suite '{suite}' in {apt}/sources.list(.d)",
        hint="set image_options.mirror in the lab file (or pass --mirror URL)",
    )


def _deb822_uris(text: str, suite: str) -> Iterable[str]:
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if (
            "deb" in fields.get("types", "").split()
            and suite in fields.get("suites", "").split()
            and "main" in fields.get("components", "").split()
        ):
            yield from fields.get("uris", "").split()


def _one_line_uris(text: str, suite: str) -> Iterable[str]:
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0])  # drop comments and [options]
        words = line.split()
        if len(words) >= 4 and words[0] == "deb" and words[2] == suite and "main" in words[3:]:
            yield words[1]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class BuildProgress:
    """One progress event: `layer` (recipe name), `what` it is doing, layer `index` of `total`."""

    layer: str
    what: str  # "cached", "bootstrap ...", "copy parent ...", "packages: ...", "step <name>", "done ..."
    index: int
    total: int


ProgressFn = Callable[[BuildProgress], None]


@dataclass(frozen=True)
class BuiltImage:
    """A built (or cached) image: the leaf layer of a chain."""

    name: str
    hash: str
    directory: Path
    properties: dict[str, str]
    skipped: tuple[str, ...]  # steps skipped because their input was not given
    cached: bool  # True when no layer had to be built
    seconds: float
    layers: tuple[str, ...] = field(default=())  # layer directory names, root first

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs"

    @property
    def tarball(self) -> Path:
        return self.directory / TARBALL


# ---------------------------------------------------------------- builder


class ImageBuilder:
    """Builds recipe chains layer by layer; each layer is content-addressed and cached."""

    def __init__(
        self,
        book: RecipeBook | None = None,
        cache: Path | None = None,
        bootstrap: Bootstrapper = debootstrap,
        runner: ChrootRunner = chroot_run,
        mirror: str | None = None,
        progress: ProgressFn | None = None,
    ):
        self.book = book or RecipeBook()
        self.cache = Path(cache) if cache else cache_dir()
        self.bootstrap = bootstrap
        self.runner = runner
        self.mirror = mirror
        self.progress = progress or (lambda event: None)

    def plan(
        self, name: str, inputs: Mapping[str, Path] | None = None, skip_missing: Iterable[str] = ()
    ) -> list[tuple[Recipe, str, tuple[str, ...]]]:
        """(layer, hash, skipped step names) for every layer, root first. Checks inputs; builds nothing.

        Raises ImageBuildError naming the first missing input (and its flag) unless it is in `skip_missing`.
        """
        chain = self.book.chain(name)
        given = {k: Path(v) for k, v in (inputs or {}).items()}
        skip = set(skip_missing)
        _check_inputs(chain, given, skip)
        result: list[tuple[Recipe, str, tuple[str, ...]]] = []
        parent: str | None = None
        for layer in chain.layers:
            skipped = tuple(s.name for s in layer.steps if s.needs and s.needs not in given)
            extra = {"suite": chain.suite, "variant": chain.variant} if layer is chain.root else {}
            parent = layer_hash(parent, layer, given, skipped, extra)
            result.append((layer, parent, skipped))
        return result

    def build(
        self,
        name: str,
        inputs: Mapping[str, Path] | None = None,
        skip_missing: Iterable[str] = (),
        no_cache: bool = False,
    ) -> BuiltImage:
        """Build `name` (reusing every cached layer unless `no_cache`) and return its leaf layer."""
        started = time.monotonic()
        chain = self.book.chain(name)
        given = {k: Path(v).resolve() for k, v in (inputs or {}).items()}
        layers = self.plan(name, given, skip_missing)
        self.cache.mkdir(parents=True, exist_ok=True)
        built_any = False
        parent_dir: Path | None = None
        all_skipped: list[str] = []
        for index, (layer, digest, skipped) in enumerate(layers, start=1):
            target = self.cache / f"{layer.name}-{digest}"
            all_skipped += skipped
            # one builder per layer at a time (threads or processes); the loser finds it cached
            with _layer_lock(self.cache / f".{layer.name}-{digest}.lock"):
                if (target / MANIFEST).is_file() and not no_cache:
                    self.progress(BuildProgress(layer.name, "cached", index, len(layers)))
                    log.debug("layer %s cached at %s", layer.name, target)
                else:
                    self._build_layer(
                        chain, layer, digest, skipped, parent_dir, target, given, index, len(layers)
                    )
                    built_any = True
            parent_dir = target
        assert parent_dir is not None
        manifest = json.loads((parent_dir / MANIFEST).read_text())
        return BuiltImage(
            name=chain.name,
            hash=manifest["hash"],
            directory=parent_dir,
            properties=manifest["properties"],
            skipped=tuple(all_skipped),
            cached=not built_any,
            seconds=time.monotonic() - started,
            layers=tuple(f"{layer.name}-{digest}" for layer, digest, _ in layers),
        )

    def _build_layer(
        self,
        chain: Chain,
        layer: Recipe,
        digest: str,
        skipped: tuple[str, ...],
        parent_dir: Path | None,
        target: Path,
        inputs: Mapping[str, Path],
        index: int,
        total: int,
    ) -> None:
        started = time.monotonic()
        # we hold this layer's lock: any work dir of the same layer is a killed build's leftover
        for stale in self.cache.glob(f".build-{layer.name}-{digest[:16]}-*"):
            _remove_tree(stale)
        work = Path(tempfile.mkdtemp(prefix=f".build-{layer.name}-{digest[:16]}-", dir=self.cache))
        rootfs = work / "rootfs"

        def step(what: str) -> None:
            log.info("[%s %d/%d] %s", layer.name, index, total, what)
            self.progress(BuildProgress(layer.name, what, index, total))

        try:
            if parent_dir is None:
                mirror = self.mirror or system_mirror(chain.suite)
                step(f"bootstrap {chain.suite} ({chain.variant}) from {mirror}")
                self.bootstrap(rootfs, chain.suite, chain.variant, mirror)
            else:
                step(f"copy parent layer {parent_dir.name}")
                _copy_tree(parent_dir / "rootfs", rootfs)
            _write(rootfs, POLICY_RC_D, "#!/bin/sh\nexit 101\n", mode=0o755)
            if layer.packages:
                step(f"packages: {' '.join(layer.packages)}")
                self.runner(rootfs, _apt_script(layer.packages), {})
            if layer.files:
                step(f"files: {len(layer.files)}")
                for dest in sorted(layer.files):
                    _copy_file(layer.source_of(dest), rootfs, dest)
            for s in layer.steps:
                if s.name in skipped:
                    step(f"skip {s.name} (input '{s.needs}' not given)")
                    continue
                step(f"step {s.name}")
                binds = {f"{INPUT_MOUNT}/{s.needs}": inputs[s.needs]} if s.needs else {}
                try:
                    self.runner(rootfs, s.run, binds)
                except ImageBuildError as err:
                    raise ImageBuildError(
                        f"recipe {layer.name}: step '{s.name}' failed: {err}",
                        hint=f"fix the step in {layer.path}",
                    ) from err
            self._install_runtime(chain, layer, rootfs)
            (rootfs / POLICY_RC_D.lstrip("/")).unlink(missing_ok=True)
            properties = self._properties(chain, layer, digest, skipped, parent_dir)
            _write_metadata(work, properties)
            manifest = {
                "hash": digest,
                "name": layer.name,
                "parent": parent_dir.name if parent_dir else None,
                "properties": properties,
                "skipped": list(skipped),
                "build_seconds": round(time.monotonic() - started, 1),
                "built_at": int(time.time()),
            }
            (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            if target.exists():  # --no-cache rebuild: replace the old layer
                _remove_tree(target)
            work.rename(target)
            step(f"done in {time.monotonic() - started:.1f}s")
        except BaseException:
            _remove_tree(work)
            raise

    def _install_runtime(self, chain: Chain, layer: Recipe, rootfs: Path) -> None:
        """Turn `services` and `start` into what the init reads (see the module docstring)."""
        if layer.services and not (rootfs / "usr/bin/runsvdir").exists():
            raise ImageBuildError(
                f"{layer.path}: services: need runit in the image to supervise them",
                hint="extend the 'server' recipe or add 'runit' to packages",
            )
        for svc, command in layer.services.items():
            run = f"#!/bin/sh\nexec 2>&1\n{command}\n"
            _write(rootfs, f"{SERVICE_DIR}/{svc}/run", run, mode=0o755)
        if layer.start:
            _write(rootfs, START_FILE, f"#!/bin/sh\n{layer.start}\n", mode=0o755)
        (rootfs / BOOT_HOOKS_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
        # debootstrap copies the build host's resolver; lab nodes must not inherit it
        _write(rootfs, "/etc/resolv.conf", "")

    def _properties(
        self, chain: Chain, layer: Recipe, digest: str, skipped: tuple[str, ...], parent_dir: Path | None
    ) -> dict[str, str]:
        inherited: dict[str, str] = {}
        for ancestor in chain.layers:
            inherited.update(ancestor.properties)
            if ancestor is layer:
                break
        parent_skipped = ""
        if parent_dir is not None:
            parent_skipped = json.loads((parent_dir / MANIFEST).read_text())["properties"].get(
                "distrilab.skipped", ""
            )
        all_skipped = [s for s in [*parent_skipped.split(","), *skipped] if s]
        props = {
            "os": "debian",
            "release": chain.suite,
            "architecture": "x86_64",
            "description": f"distrilab {layer.name} ({chain.suite} {chain.variant})",
            **inherited,
            "distrilab.recipe": layer.name,
            "distrilab.hash": digest,
        }
        if all_skipped:
            props["distrilab.skipped"] = ",".join(all_skipped)
        return props


# ---------------------------------------------------------------- packing


def pack(image: BuiltImage) -> Path:
    """The unified LXD tarball (metadata.yaml + templates/ + rootfs/), packed once per layer."""
    with _layer_lock(image.directory / ".pack.lock"):
        return _pack_locked(image)


def _pack_locked(image: BuiltImage) -> Path:
    if image.tarball.is_file():
        return image.tarball
    if shutil.which("zstd") is None:
        raise ImageBuildError("zstd is not installed (it packs images)", hint="apt-get install -y zstd")
    partial = image.directory / f".{TARBALL}.{os.getpid()}"
    try:
        _run(
            [
                "tar",
                "--numeric-owner",
                "--xattrs",
                "-I",
                "zstd -T0 -3 -q",
                "-C",
                str(image.directory),
                "-cf",
                str(partial),
                "metadata.yaml",
                "templates",
                "rootfs",
            ],
            what=f"pack {image.name}",
        )
        partial.rename(image.tarball)
    finally:
        partial.unlink(missing_ok=True)
    return image.tarball


def fingerprint(tarball: Path) -> str:
    """LXD's fingerprint of a unified image tarball: the sha256 of the file."""
    import hashlib

    h = hashlib.sha256()
    with tarball.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rootfs_bytes(image: BuiltImage) -> int:
    """Apparent size of the image's root filesystem (what a `dir` pool copies per container)."""
    out = subprocess.run(["du", "-sb", str(image.rootfs)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


# ---------------------------------------------------------------- helpers


def _check_inputs(chain: Chain, given: Mapping[str, Path], skip: set[str]) -> None:
    for layer in chain.layers:
        for s in layer.steps:
            if not s.needs or s.needs in skip:
                continue
            if s.needs not in given:
                raise ImageBuildError(
                    f"recipe {layer.name}: step '{s.name}' needs input '{s.needs}', which was not given",
                    hint=f"pass --input {s.needs}=PATH, or --without {s.needs} to build without this step",
                )
            if not Path(given[s.needs]).exists():
                raise ImageBuildError(
                    f"input {s.needs}: path does not exist ({given[s.needs]})",
                    hint=f"pass --input {s.needs}=PATH with an existing file or directory",
                )
            if s.needs == IGNITE_DIST:
                problems = ignite_dist_problems(Path(given[s.needs]))
                if problems:
                    raise ImageBuildError(
                        f"input {s.needs}: {'; '.join(problems)}",
                        hint=f"pass an Apache Ignite {IGNITE_SUPPORTED} binary distribution "
                        "(images/ignite.py says why)",
                    )


def _apt_script(packages: Iterable[str]) -> str:
    names = " ".join(shlex.quote(p) for p in packages)
    return (
        "apt-get update -qq\n"
        f"apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 {names} >/dev/null\n"
        "apt-get clean\n"
        "rm -rf /var/lib/apt/lists/*\n"
    )


@contextlib.contextmanager
def _layer_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _in_root(rootfs: Path, dest: str) -> Path:
    """The host path of `dest` inside `rootfs`, following directory symlinks as the chroot would.

    Image symlinks are often absolute (`/etc/service -> /etc/runit/...`); resolving them on the
    host would write into the build machine's own /etc. The last component is never followed.
    """
    pending = [p for p in dest.split("/") if p]
    current, hops = rootfs, 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = rootfs if current == rootfs else current.parent
            continue
        candidate = current / part
        if pending and candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise ImageBuildError(f"too many symlinks resolving {dest} in {rootfs}")
            target = os.readlink(candidate)
            pending = [p for p in target.split("/") if p] + pending
            current = rootfs if target.startswith("/") else current
            continue
        current = candidate
    return current


def _write(rootfs: Path, dest: str, text: str, mode: int = 0o644) -> None:
    path = _in_root(rootfs, dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def _copy_file(source: Path, rootfs: Path, dest: str) -> None:
    path = _in_root(rootfs, dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    shutil.copy2(source, path)  # keeps the source's mode (executable scripts stay executable)


def _copy_tree(source: Path, dest: Path) -> None:
    # reflink where the filesystem supports it (btrfs, xfs), a plain copy elsewhere
    _run(["cp", "-a", "--reflink=auto", str(source), str(dest)], what=f"copy {source}")


def _remove_tree(path: Path) -> None:
    if path.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def _write_metadata(work: Path, properties: Mapping[str, str]) -> None:
    templates = work / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "hostname.tpl").write_text("{{ container.name }}\n")
    (templates / "hosts.tpl").write_text("127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n")
    when = ["create", "copy", "rename"]
    metadata = {
        "architecture": properties.get("architecture", "x86_64"),
        "creation_date": int(time.time()),
        "properties": dict(properties),
        "templates": {
            "/etc/hostname": {"when": when, "template": "hostname.tpl"},
            "/etc/hosts": {"when": when, "template": "hosts.tpl"},
        },
    }
    (work / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=True))
