"""Stage "images": the lab's node images built (or cached), imported once, aliased for the lab.

Owns, on each host's LXD:
- image aliases `dl-<lab>-<recipe>`, marked with the description `distrilab:<lab>:images`
  (a prefix match would confuse lab `a` with lab `a-b`);
- images distrilab imported (property `distrilab.hash`), shared by every lab on the host: an image
  is imported once per content hash, whichever lab needs it first.

Apply builds each recipe through `images.builder` (layer cache under ~/.cache/distrilab/images),
imports it unless an image with the same fingerprint exists, then points the lab's alias at it.
Destroy deletes the lab's aliases, then each distrilab-imported image those aliases pointed at
that no alias refers to any more (an apply that moves an alias does the same for the old image).
Images distrilab did not import, and images no alias of this lab ever released (another lab's
import in flight, `distrilab image build --import`), are never touched.

Other stages resolve a recipe with `resolve(client, lab, recipe)`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pylxd.exceptions import LXDAPIException, NotFound

from cdk.errors import DistrilabError, ImageBuildError
from cdk.names import image_alias, interface_alias
from images.builder import BuiltImage, ImageBuilder, fingerprint, pack
from modules import lxd_rest as rest
from modules.reconcile import Action, Reconciler, workers_fields

log = logging.getLogger(__name__)
OWNER = "images"
HASH_PROPERTY = "distrilab.hash"
RECIPE_PROPERTY = "distrilab.recipe"


def alias_description(lab: str) -> str:
    return interface_alias(lab, OWNER)


@dataclass(frozen=True)
class Spec:
    lab: str
    host: str
    max_workers: int | None = None  # what the lab sets (modules/reconcile.py: resolve_workers)
    workers_limit: int | None = None  # the host's own limit
    endpoint: dict[str, Any] = field(default_factory=dict)
    recipes: tuple[str, ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)
    mirror: str | None = None
    skip_missing: tuple[str, ...] = ()


def parse_spec(data: dict[str, Any]) -> Spec:
    try:
        return Spec(
            lab=str(data["lab"]),
            host=str(data["host"]),
            **workers_fields(data),
            endpoint=dict(data.get("endpoint") or {"name": data["host"], "kind": "local"}),
            recipes=tuple(sorted(set(data.get("recipes") or []))),
            inputs={str(k): str(v) for k, v in (data.get("inputs") or {}).items()},
            mirror=data.get("mirror"),
            skip_missing=tuple(data.get("skip_missing") or ()),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DistrilabError(f"bad images spec: {err!r}") from err


# ---------------------------------------------------------------- observe


def observe_images(client: Any, spec: Spec, builder: ImageBuilder) -> dict[str, Any]:
    """Reads only: wanted hash per recipe, the host's aliases and its distrilab-imported images."""
    inputs = {k: Path(v) for k, v in spec.inputs.items()}
    wanted = {r: builder.plan(r, inputs, spec.skip_missing)[-1][1] for r in spec.recipes}
    aliases = {
        a["name"]: {"target": a["target"], "description": a.get("description", "")}
        for a in client.api.images.aliases.get(params={"recursion": 1}).json()["metadata"]
    }
    images = {
        i["fingerprint"]: {
            "hash": i["properties"][HASH_PROPERTY],
            "recipe": i["properties"].get(RECIPE_PROPERTY, ""),
        }
        for i in client.api.images.get(params={"recursion": 1}).json()["metadata"]
        if HASH_PROPERTY in (i.get("properties") or {})
    }
    return {"wanted": wanted, "aliases": aliases, "images": images}


# ---------------------------------------------------------------- plan (pure)


def plan_images(spec: Spec, observed: dict[str, Any]) -> list[Action]:
    """import (phase 0) -> alias create/update/delete (1) -> delete unreferenced images (2)."""
    wanted: dict[str, str] = observed["wanted"]
    aliases: dict[str, dict[str, str]] = observed["aliases"]
    images: dict[str, dict[str, str]] = observed["images"]
    by_hash = {meta["hash"]: fp for fp, meta in images.items()}
    mine = alias_description(spec.lab)
    actions: list[Action] = []
    final_targets = {name: a["target"] for name, a in aliases.items()}
    released: set[str] = set()  # images this lab's aliases stop pointing at
    for recipe, digest in sorted(wanted.items()):
        name = image_alias(spec.lab, recipe)
        fp = by_hash.get(digest)
        if fp is None:
            actions.append(Action("import", recipe, f"no image with hash {digest[:12]}", 0, {"hash": digest}))
        have = aliases.get(name)
        if have is None:
            reason = "missing"
        elif fp is None or have["target"] != fp:
            reason = f"drift: {have['target'][:12]}->{(fp or digest)[:12]}"
        elif have["description"] != mine:
            reason = "drift: owner mark"
        else:
            continue
        actions.append(Action("alias", name, reason, 1, {"recipe": recipe, "hash": digest}))
        if have is not None:
            released.add(have["target"])
        final_targets[name] = fp or f"hash:{digest}"
    wanted_aliases = {image_alias(spec.lab, r) for r in wanted}
    for name, a in sorted(aliases.items()):
        if a["description"] == mine and name not in wanted_aliases:
            actions.append(Action("unalias", name, "no longer in the lab", 1))
            released.add(a["target"])
            final_targets.pop(name, None)
    # only images this lab released: another lab's fresh import may not be aliased yet
    referenced = set(final_targets.values())
    for fp, meta in sorted(images.items()):
        if fp in released and fp not in referenced and meta["hash"] not in wanted.values():
            actions.append(
                Action(
                    "delete",
                    f"image {meta['recipe']} {fp[:12]}",
                    "no alias refers to it",
                    2,
                    {"fingerprint": fp},
                )
            )
    return actions


# ---------------------------------------------------------------- execute


def import_image(client: Any, image: BuiltImage) -> str:
    """Import a built image unless an image with its fingerprint exists; returns the fingerprint."""
    tarball = pack(image)
    fp = fingerprint(tarball)
    if client.images.exists(fp):
        return fp
    try:
        with tarball.open("rb") as stream:  # streamed: ACA images are hundreds of MB
            client.images.create(stream, public=False, wait=True)
    except LXDAPIException:
        if not client.images.exists(fp):  # another worker/lab imported the same image meanwhile
            raise
    log.info("imported %s as %s (%.1f MB)", image.name, fp[:12], tarball.stat().st_size / 1e6)
    return fp


def find_by_hash(client: Any, digest: str) -> str | None:
    for item in client.api.images.get(params={"recursion": 1}).json()["metadata"]:
        if (item.get("properties") or {}).get(HASH_PROPERTY) == digest:
            return str(item["fingerprint"])
    return None


def set_alias(client: Any, name: str, target: str, description: str) -> None:
    body = {"target": target, "description": description}
    try:
        client.api.images.aliases[name].put(json=body)
    except NotFound:
        client.api.images.aliases.post(json={"name": name, **body})


def resolve(client: Any, lab: str, recipe: str) -> str:
    """The fingerprint of the image a lab uses for `recipe`; DistrilabError when not imported yet."""
    name = image_alias(lab, recipe)
    try:
        return str(client.api.images.aliases[name].get().json()["metadata"]["target"])
    except NotFound as err:
        raise DistrilabError(
            f"image alias {name} not found on this host ({err})\n"
            "  hint: run the images stage first ('distrilab up', or 'distrilab image build' + a lab apply)"
        ) from err


class Images(Reconciler[Spec, dict[str, Any]]):
    name = OWNER

    def __init__(self, builder: ImageBuilder | None = None):
        self._builder = builder

    def builder(self, spec: Spec) -> ImageBuilder:
        return self._builder or ImageBuilder(mirror=spec.mirror)

    def load_spec(self, data: dict[str, Any]) -> Spec:
        return parse_spec(data)

    def empty_spec(self, spec: Spec) -> Spec:
        return Spec(spec.lab, spec.host, spec.max_workers, spec.workers_limit, spec.endpoint)

    def connect(self, spec: Spec) -> Any:
        return rest.connect(spec.endpoint, self.max_workers(spec))  # a connection pool per worker

    def observe(self, client: Any, spec: Spec) -> dict[str, Any]:
        return observe_images(client, spec, self.builder(spec))

    def plan(self, spec: Spec, observed: dict[str, Any]) -> list[Action]:
        return plan_images(spec, observed)

    def execute_action(self, client: Any, spec: Spec, action: Action) -> None:
        if action.verb == "import":
            inputs = {k: Path(v) for k, v in spec.inputs.items()}
            image = self.builder(spec).build(action.target, inputs, spec.skip_missing)
            if image.hash != action.data["hash"]:
                raise ImageBuildError(f"recipe {action.target} changed while applying; run apply again")
            import_image(client, image)
        elif action.verb == "alias":
            fp = find_by_hash(client, action.data["hash"])
            if fp is None:
                raise ImageBuildError(
                    f"no imported image for {action.data['recipe']} ({action.data['hash'][:12]})"
                )
            set_alias(client, action.target, fp, alias_description(spec.lab))
        elif action.verb == "unalias":
            client.api.images.aliases[action.target].delete()
        elif action.verb == "delete":
            # an alias made meanwhile (another lab's apply) keeps the image
            aliases = client.api.images.aliases.get(params={"recursion": 1}).json()["metadata"]
            if any(a["target"] == action.data["fingerprint"] for a in aliases):
                return
            response = client.api.images[action.data["fingerprint"]].delete()
            client.operations.wait_for_operation(response.json()["operation"])
        else:
            raise ValueError(f"unknown action {action}")


if __name__ == "__main__":
    sys.exit(Images().main())
