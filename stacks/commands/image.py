"""`distrilab image build|list|rm`: build node images from recipes, list and prune the cache.

    distrilab image build switch
    distrilab image build aca --input aca_source=../alcor-control-agent
    distrilab image build aca --without aca_source     # skip the steps that need it
    distrilab image build server --import               # also import into the local LXD
    distrilab image list
    distrilab image rm switch                           # every cached layer of the recipe

Builds are cached by content hash under ~/.cache/distrilab/images (env DISTRILAB_CACHE); a
rebuild with nothing changed is a cache hit. `rm` only prunes the cache: images in LXD belong to
the labs that alias them and go with `distrilab down`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from cdk.errors import DistrilabError
from images.aca import aca_options_from_args, add_aca_arguments
from stacks.json_output import emit

if TYPE_CHECKING:
    from images.builder import BuildProgress

# images.builder and images.recipe are imported in the handlers: every distrilab command loads
# this module to register `image`, only `image` needs the builder

console = Console()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "image",
        help="build, list and remove node images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="image_command", metavar="ACTION", required=True)

    b = sub.add_parser("build", help="build a recipe (cached by content hash)")
    b.add_argument("name", help="recipe name (images/recipes/<name>.yaml)")
    b.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a build input a recipe step needs (repeatable)",
    )
    b.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="INPUT",
        help="build without this input: skip the steps that need it (repeatable)",
    )
    b.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    b.add_argument("--mirror", help="Debian mirror URL (default: this machine's apt sources)")
    b.add_argument("--import", dest="do_import", action="store_true", help="import into the local LXD")
    add_aca_arguments(b)
    b.set_defaults(func=build_command)

    ls = sub.add_parser("list", help="cached image layers")
    ls.add_argument("--json", action="store_true", help="print the layers as JSON")
    ls.set_defaults(func=list_command)

    rm = sub.add_parser("rm", help="remove every cached layer of a recipe")
    rm.add_argument("name")
    rm.set_defaults(func=rm_command)


def parse_inputs(pairs: list[str]) -> dict[str, Path]:
    inputs: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise DistrilabError(
                f"--input {pair}: expected NAME=PATH (e.g. aca_source=../alcor-control-agent)"
            )
        if not Path(path).exists():
            raise DistrilabError(f"--input {name}: path does not exist ({path})")
        inputs[name] = Path(path)
    return inputs


def build_command(args: argparse.Namespace) -> int:
    from images.builder import ImageBuilder, rootfs_bytes

    with console.status(f"building {args.name}") as status:

        def progress(event: BuildProgress) -> None:
            status.update(f"[{event.layer} {event.index}/{event.total}] {event.what}")
            if event.what == "cached" or event.what.startswith(("done", "skip")):
                console.print(f"  {event.layer}: {event.what}")

        aca = aca_options_from_args(args)  # --aca-source/--aca-deps/--without-aca-binary
        inputs = {**parse_inputs(args.input), **aca.inputs}
        builder = ImageBuilder(mirror=args.mirror, progress=progress)
        image = builder.build(args.name, inputs, (*args.without, *aca.skip), args.no_cache)
        fingerprint = None
        if args.do_import:
            from modules.images import import_image
            from modules.lxd_client import connect

            status.update("importing into LXD")
            fingerprint = import_image(connect(), image)
    state = "cache hit" if image.cached else "built"
    console.print(
        f"[green]{image.name}[/] {state} in {image.seconds:.1f}s: {image.hash[:12]} ({image.directory})"
    )
    console.print(
        f"  rootfs {rootfs_bytes(image) / 1e6:.0f} MB"
        + (f", imported {fingerprint[:12]}" if fingerprint else "")
    )
    if image.skipped:
        console.print(f"  [yellow]skipped steps (input not given):[/] {', '.join(image.skipped)}")
    return 0


def cached_layers(root: Path) -> list[dict[str, object]]:
    from images.builder import MANIFEST, TARBALL

    layers = []
    for manifest in sorted(root.glob(f"*/{MANIFEST}")):
        data = json.loads(manifest.read_text())
        tarball = manifest.parent / TARBALL
        data["directory"] = manifest.parent
        data["packed_mb"] = tarball.stat().st_size / 1e6 if tarball.is_file() else None
        layers.append(data)
    return layers


def list_command(args: argparse.Namespace) -> int:
    from images.builder import cache_dir
    from images.recipe import RecipeBook

    root = cache_dir()
    known = set(RecipeBook().names())
    if args.json:
        layers = [{**layer, "directory": str(layer["directory"]), "has_recipe": layer["name"] in known}
                  for layer in cached_layers(root)]
        emit("image-list", {"cache": str(root), "layers": layers})
        return 0
    table = Table(title=f"cached image layers in {root}")
    for col in ("recipe", "hash", "parent", "built in", "packed", "skipped"):
        table.add_column(col)
    for layer in cached_layers(root):
        name = str(layer["name"]) + ("" if layer["name"] in known else " (no recipe)")
        packed = f"{layer['packed_mb']:.0f} MB" if layer["packed_mb"] else "-"
        parent = str(layer["parent"] or "-")
        table.add_row(
            name,
            str(layer["hash"])[:12],
            parent[:24],
            f"{layer['build_seconds']}s",
            packed,
            ", ".join(layer["skipped"]) or "-",
        )  # type: ignore[arg-type]
    console.print(table)
    return 0


def rm_command(args: argparse.Namespace) -> int:
    from images.builder import cache_dir

    removed = 0
    for layer in cached_layers(cache_dir()):
        if layer["name"] == args.name:
            shutil.rmtree(layer["directory"])  # type: ignore[arg-type]
            removed += 1
    if not removed:
        raise DistrilabError(f"no cached layers of recipe '{args.name}' in {cache_dir()}")
    console.print(
        f"removed {removed} cached layer(s) of {args.name} (children built on them rebuild from it)"
    )
    return 0
