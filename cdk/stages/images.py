"""Desired state of the `images` stage: the recipes a lab's nodes use, with their build inputs.

Every recipe named in `lab.images` (deduplicated) is built (or taken from the cache), imported
into the host's LXD once, and aliased `dl-<lab>-<recipe>` for the lab. `images_options` gives
the Debian mirror (default: the machine's apt sources), build inputs such as `aca_source`
(paths relative to the lab file), and `without: [input, ...]` to build images whose steps need
an input that is not given (the steps are skipped and recorded in the image's properties).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdk.model import Host, Lab
from cdk.stages import common
from cdk.stages.nodes import endpoint

#: images_options keys that are builder settings, not build inputs
SETTINGS = ("mirror", "suite", "without")


def build(lab: Lab, host: Host) -> dict[str, Any] | None:
    """The images-stage spec for `host` (pure): every recipe `lab.images` names, deduplicated.

    A multi-host lab's hosts form one LXD cluster, whose images and aliases are shared by every
    member: the first host imports them once for all (LXD copies an image to a member when an
    instance there needs it); parallel imports and deletes from every member would race."""
    clustered = len(lab.hosts) > 1
    if clustered and host.name != lab.hosts[0].name:
        return None
    options = dict(lab.image_options)
    base = Path(lab.source).resolve().parent if lab.source and not lab.source.startswith("<") else None
    inputs = {
        name: str(base / value) if base and not Path(str(value)).is_absolute() else str(value)
        for name, value in sorted(options.items())
        if name not in SETTINGS
    }
    from cdk.stages import alcor, controller  # their images, on the control-plane host

    hosts = lab.hosts if clustered else (host,)
    extra: set[str] = set()
    for each in hosts:
        extra |= alcor.required_recipes(lab, each) | controller.required_recipes(lab, each)
    recipes = sorted(set(lab.images.values()) | extra)
    return {
        **common(lab, host),
        "endpoint": endpoint(host, lab.name),
        "recipes": recipes,
        "inputs": inputs,
        "mirror": options.get("mirror"),
        "skip_missing": sorted(options.get("without") or []),
    }
