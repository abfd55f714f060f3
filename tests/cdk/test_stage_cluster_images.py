"""The `cluster` and `images` stage specs built from a lab (pure builders)."""

from __future__ import annotations

import json
from pathlib import Path

from cdk.names import image_alias
from cdk.pipeline import lab_from_dict
from cdk.stages import STAGES
from cdk.stages.cluster import POOL, SYSCTLS
from modules.images import parse_spec as parse_images_spec
from modules.lxd_host import parse_spec as parse_cluster_spec

LAB = {
    "name": "st",
    "topology": {"kind": "leaf-spine", "spines": 1, "leaves": 1, "servers_per_leaf": 1},
    "images": {"server": "server", "switch": "switch", "spine": "switch"},
    "images_options": {"mirror": "http://mirror.invalid/debian", "aca_source": "src/aca"},
    "lxd": {"storage": "dir", "storage_size": "5GiB"},
}


def specs(stage: str, data: dict | None = None, source: str = "/labs/st.yaml") -> list[dict]:
    lab = lab_from_dict(data or LAB, source, host_routes=[])
    builder = next(s for s in STAGES if s.name == stage)
    return [spec for host in lab.hosts if (spec := builder.build(lab, host)) is not None]


def test_cluster_spec_round_trips_into_the_reconciler() -> None:
    (spec,) = specs("cluster")
    assert spec["pool"] == {"name": POOL, "driver": "dir", "size": "5GiB"}
    assert spec["sysctls"] == SYSCTLS and spec["cluster"]["enabled"] is False
    parsed = parse_cluster_spec(json.loads(json.dumps(spec)))
    assert parsed.pool is not None and parsed.pool.driver == "dir"
    assert parsed.endpoint["kind"] == "local"


def test_images_spec_dedups_recipes_and_resolves_inputs_next_to_the_lab_file() -> None:
    (spec,) = specs("images")
    assert spec["recipes"] == ["server", "switch"]
    assert spec["mirror"] == "http://mirror.invalid/debian"
    assert spec["inputs"] == {"aca_source": str(Path("/labs/src/aca").resolve())}
    parsed = parse_images_spec(json.loads(json.dumps(spec)))
    assert parsed.recipes == ("server", "switch") and parsed.skip_missing == ()


def test_image_alias_is_per_lab() -> None:
    assert image_alias("st", "switch") == "dl-st-switch"


def test_a_multi_host_lab_imports_its_images_once_from_the_first_host() -> None:
    hosts = [{"name": f"h{i}", "kind": "ssh", "address": f"198.51.100.{i}"} for i in (1, 2, 3)]
    topology = {"kind": "leaf-spine", "spines": 2, "leaves": 3, "servers_per_leaf": 2}
    images = specs("images", {**LAB, "hosts": hosts, "topology": topology})
    # one LXD cluster: images and aliases are shared; parallel imports/deletes would race
    assert [s["host"] for s in images] == ["h1"]
    assert images[0]["recipes"] == ["server", "switch"]
    assert images[0]["endpoint"]["lab"] == "st"  # reached with the lab's own credentials
    cluster = specs("cluster", {**LAB, "hosts": hosts, "topology": topology})
    assert [(s["host"], s["cluster"]["role"]) for s in cluster] == [
        ("h1", "bootstrap"), ("h2", "join"), ("h3", "join")]


def test_a_single_remote_host_is_a_cluster_of_one() -> None:
    # reached over LXD's HTTPS API like every remote host: its address, the lab's trust and the
    # pinned certificate come from the bootstrap (one ssh host alone was left standalone, and
    # the images stage found nothing listening on 8443)
    remote = {**LAB, "hosts": [{"name": "h1", "kind": "ssh", "address": "192.0.2.21"}]}
    (spec,) = specs("cluster", remote)
    assert spec["cluster"]["enabled"] is True and spec["cluster"]["role"] == "bootstrap"
