"""Image benchmark: the `aca` recipe built cold, rebuilt warm, and rebuilt after a one-package change.

    .venv/bin/python -m bench.images [--keep-cache] [--no-import]

Phases, all in a private cache directory (the user's cache is not touched) and without an ACA
checkout (the build-aca and aca-third-party steps are skipped, as on CI):
  cold     empty cache: debootstrap + server layer + aca layer
  warm     same recipes again: every layer is a cache hit
  change   a copy of the recipes with one more package in aca.yaml: server stays cached, aca rebuilds
Also measured: rootfs size, packed (zstd) tarball size and the time to pack it, and the time to
import it into the local LXD (the imported image is deleted again unless LXD already had it).
Results: a table, and JSON in bench/results/images.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from images.aca import aca_build_options
from images.builder import BuiltImage, ImageBuilder, fingerprint, pack, rootfs_bytes
from images.recipe import RECIPES_DIR, RecipeBook

RESULTS = Path(__file__).resolve().parent / "results" / "images.json"
RECIPE = "aca"
#: small and dependency-free, so the change phase measures the layer rebuild, not the package
EXTRA_PACKAGE = "jq"

console = Console()


def build(recipes: Path, cache: Path) -> tuple[BuiltImage, float]:
    builder = ImageBuilder(book=RecipeBook([recipes]), cache=cache)
    started = time.monotonic()
    image = builder.build(RECIPE, skip_missing=aca_build_options(without_aca_binary=True).skip)
    return image, time.monotonic() - started


def with_extra_package(recipes: Path, workdir: Path) -> Path:
    """A copy of the recipes whose aca.yaml installs one more package."""
    copy = workdir / "recipes-changed"
    shutil.copytree(recipes, copy)
    recipe = copy / f"{RECIPE}.yaml"
    text = recipe.read_text()
    marker = "packages:\n"
    if marker not in text:
        raise SystemExit(f"{recipe}: no 'packages:' list to extend")
    recipe.write_text(text.replace(marker, f"{marker}  - {EXTRA_PACKAGE}\n", 1))
    return copy


def lxd_import(image: BuiltImage) -> dict[str, Any]:
    """Pack and import into the local LXD; the image is removed again if this run added it."""
    started = time.monotonic()
    tarball = pack(image)
    pack_seconds = time.monotonic() - started
    fp = fingerprint(tarball)
    result: dict[str, Any] = {"packed_bytes": tarball.stat().st_size, "pack_seconds": round(pack_seconds, 2)}
    if shutil.which("lxc") is None:
        return result | {"import_seconds": None, "import_note": "lxc not installed"}
    known = subprocess.run(["lxc", "image", "info", fp], capture_output=True, text=True)
    if known.returncode == 0:
        return result | {"import_seconds": None, "import_note": "LXD already had this image"}
    started = time.monotonic()
    subprocess.run(["lxc", "image", "import", str(tarball)], check=True, capture_output=True, text=True)
    result["import_seconds"] = round(time.monotonic() - started, 2)
    subprocess.run(["lxc", "image", "delete", fp], capture_output=True, text=True)
    return result


def run(keep_cache: bool, do_import: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="distrilab-bench-images-"))
    cache = workdir / "cache"
    try:
        console.print(f"cold build of {RECIPE} (cache {cache}) ...")
        cold, cold_s = build(RECIPES_DIR, cache)
        console.print(f"  {cold_s:.1f}s; warm rebuild ...")
        warm, warm_s = build(RECIPES_DIR, cache)
        console.print(f"  {warm_s:.2f}s; rebuild with '{EXTRA_PACKAGE}' added to {RECIPE}.yaml ...")
        changed, changed_s = build(with_extra_package(RECIPES_DIR, workdir), cache)
        console.print(f"  {changed_s:.1f}s")
        layer_seconds = {
            name: json.loads((cache / name / "build.json").read_text())["build_seconds"]
            for name in (*cold.layers, changed.layers[-1])
        }
        result: dict[str, Any] = {
            "recipe": RECIPE,
            "machine": {"cpus": _cpus(), "python": platform.python_version()},
            "cold_build_seconds": round(cold_s, 1),
            "warm_rebuild_seconds": round(warm_s, 3),
            "warm_was_cache_hit": warm.cached and warm.hash == cold.hash,
            "one_package_change_seconds": round(changed_s, 1),
            "one_package_change_reused_parent": changed.layers[0] == cold.layers[0],
            "layer_build_seconds": layer_seconds,
            "rootfs_bytes": rootfs_bytes(cold),
            "skipped_steps": list(cold.skipped),
        }
        if do_import:
            console.print("packing and importing into LXD ...")
            result |= lxd_import(cold)
        return result
    finally:
        if keep_cache:
            console.print(f"cache kept in {cache}")
        else:
            subprocess.run(["rm", "-rf", "--one-file-system", str(workdir)], check=False)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def show(result: dict[str, Any]) -> None:
    table = Table(title=f"image benchmark: {result['recipe']} (without ACA binary)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    mb = 1e6
    rows = [
        ("cold build (debootstrap + server + aca)", f"{result['cold_build_seconds']:.1f} s"),
        (
            "warm rebuild (no change)",
            f"{result['warm_rebuild_seconds']:.3f} s"
            + ("" if result["warm_was_cache_hit"] else "  NOT a cache hit"),
        ),
        (
            f"one-package change (+{EXTRA_PACKAGE})",
            f"{result['one_package_change_seconds']:.1f} s"
            + ("" if result["one_package_change_reused_parent"] else "  parent rebuilt"),
        ),
        ("rootfs size", f"{result['rootfs_bytes'] / mb:.0f} MB"),
    ]
    for layer, seconds in result["layer_build_seconds"].items():
        rows.append((f"  layer {layer[:20]}", f"{seconds:.1f} s"))
    if "packed_bytes" in result:
        rows.append(("packed tarball (zstd -3)", f"{result['packed_bytes'] / mb:.0f} MB"))
        rows.append(("pack time", f"{result['pack_seconds']:.1f} s"))
        imp = result.get("import_seconds")
        shown = f"{imp:.1f} s" if imp is not None else result.get("import_note", "-")
        rows.append(("LXD import time", shown))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep-cache", action="store_true", help="keep the private cache for inspection")
    parser.add_argument("--no-import", action="store_true", help="skip packing and the LXD import")
    args = parser.parse_args(argv)
    result = run(args.keep_cache, not args.no_import)
    show(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    console.print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
