"""The lab-file format: YAML loading with line numbers, the schema, defaults and semantic checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from cdk.errors import LabFileError
from cdk.lab import RECIPES_DIR, validate
from cdk.lab_schema import DEFAULT_POOLS, lab_schema
from cdk.lab_source import did_you_mean, format_path, read_lab_file, source_from_dict
from cdk.model import Host, Limits, LxdSettings
from cdk.topology import GENERATORS

MINIMAL = {"name": "mini", "topology": {"kind": "leaf-spine"}}


def write(tmp_path: Path, text: str, name: str = "lab.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(data: dict, **kwargs: object) -> list[str]:
    with pytest.raises(LabFileError) as caught:
        validate(source_from_dict(data, "t.yaml"), **kwargs)  # type: ignore[arg-type]
    return [f"{p.field}: {p.message}" for p in caught.value.problems]


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("name",), "name"),
        (("topology", "spines"), "topology.spines"),
        (("hosts", 1, "capacity"), "hosts[1].capacity"),
        (("topology", "links", 3, "b"), "topology.links[3].b"),
    ],
)
def test_format_path(path: tuple, text: str) -> None:
    assert format_path(path) == text


@pytest.mark.parametrize(
    ("word", "hint"),
    [
        ("topolgy", "did you mean 'topology'?"),
        ("spine", "did you mean 'spines'?"),
        ("colour", None),
    ],
)
def test_did_you_mean(word: str, hint: str | None) -> None:
    assert did_you_mean(word, ["topology", "spines", "leaves"]) == hint


def test_lines_point_at_keys_and_list_items(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: lines\n"  # 1
        "hosts:\n"  # 2
        "  - name: a\n"  # 3
        "  - name: b\n"  # 4
        "    capacity: 7\n"  # 5
        "topology:\n"  # 6
        "  kind: linear\n",  # 7
    )
    source = read_lab_file(path)
    assert source.line(("name",)) == 1
    assert source.line(("hosts", 1)) == 4
    assert source.line(("hosts", 1, "capacity")) == 5
    assert source.line(("topology", "kind")) == 7
    # a missing key is located at its nearest written ancestor
    assert source.line(("topology", "switches")) == 6
    assert source.line(("nowhere",)) is None
    assert source.directory == tmp_path


def test_missing_file_is_a_lab_file_error(tmp_path: Path) -> None:
    with pytest.raises(LabFileError) as caught:
        read_lab_file(tmp_path / "nope.yaml")
    assert str(caught.value) == (
        f"{tmp_path / 'nope.yaml'}: (file): lab file not found\n"
        "  hint: check the path; example labs are in labs/"
    )
    assert caught.value.path == str(tmp_path / "nope.yaml")


def test_python_labs_have_no_lines() -> None:
    problems = problems_of({"name": "Bad", "topology": {"kind": "linear"}})
    assert problems == [
        "name: must be a lowercase name: a letter, then letters, digits or '-', at most 20 characters"
    ]
    with pytest.raises(LabFileError, match=r"^<python>: \(lab\): must be a mapping"):
        source_from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_lab_schema_is_valid_draft_2020_12(kind: str) -> None:
    Draft202012Validator.check_schema(lab_schema(GENERATORS[kind].SCHEMA, GENERATORS))
    Draft202012Validator.check_schema(lab_schema(None, GENERATORS))


def test_defaults_fill_every_section() -> None:
    spec = validate(source_from_dict(MINIMAL))
    assert spec.name == "mini"
    assert spec.description == ""
    assert spec.hosts == (Host(name="local", kind="local"),)
    assert spec.topology_kind == "leaf-spine"
    assert spec.topology_params == {}
    assert spec.pools == DEFAULT_POOLS
    assert spec.mtu == 1500
    assert spec.images == {"server": "server", "switch": "switch"}
    assert spec.limits == {}
    assert spec.placement_strategy == "partition"
    assert spec.placement_file is None
    assert spec.lxd == LxdSettings()
    assert spec.alcor is None and spec.controller is None


def test_every_section_is_read() -> None:
    data = {
        "name": "full",
        "description": "all of it",
        "hosts": [
            {"name": "local", "capacity": 50},
            {"name": "h2", "kind": "ssh", "address": "192.0.2.20", "ssh_user": "ubuntu"},
            {"name": "c1", "kind": "aws", "aws": {"region": "eu-west-1", "instance_type": "c5.large"}},
        ],
        "topology": {"kind": "clos", "pods": 1},
        "addressing": {"management": "10.50.0.0/16", "mtu": 1450},
        "images": {"server": "server", "spine": "switch"},
        "images_options": {"mirror": "http://mirror.invalid/debian", "anything": [1, 2]},
        "resources": {"defaults": {"cpu": 1, "memory": "256MiB"}, "server": {"cpu": "0-1"}},
        "placement": {"strategy": "round-robin"},
        "lxd": {"storage": "btrfs", "storage_size": "8GiB", "max_workers": 4, "privileged": True},
        "alcor": "default",
        "controller": {"scenario": "ports"},
    }
    spec = validate(source_from_dict(data))
    assert spec.hosts[1] == Host(name="h2", kind="ssh", address="192.0.2.20", ssh_user="ubuntu")
    assert spec.hosts[2].aws == {"instance_type": "c5.large", "region": "eu-west-1"}
    assert spec.hosts[0].capacity == 50
    assert spec.topology_params == {"pods": 1}
    assert spec.pools == {**DEFAULT_POOLS, "management": "10.50.0.0/16"}
    assert spec.mtu == 1450
    assert spec.images == {"server": "server", "spine": "switch", "switch": "switch"}
    assert spec.image_options == {"mirror": "http://mirror.invalid/debian", "anything": [1, 2]}
    assert spec.limits == {"defaults": Limits("1", "256MiB"), "server": Limits("0-1", None)}
    assert spec.placement_strategy == "round-robin"
    assert spec.lxd == LxdSettings(storage="btrfs", storage_size="8GiB", max_workers=4, privileged=True)
    assert spec.alcor == {}  # "default": Alcor with nothing overridden
    assert spec.controller == {"scenario": "ports"}


@pytest.mark.parametrize("memory", ["256MiB", "1GiB", "500MB", "1048576", "50%", "100%", "2TB"])
def test_memory_limits_lxd_accepts(memory: str) -> None:
    validate(source_from_dict({**MINIMAL, "resources": {"defaults": {"memory": memory}}}))


@pytest.mark.parametrize("memory", ["256M", "1.5GiB", "lots", "0%", "101%", "256 MiB", "-1MiB"])
def test_memory_limits_lxd_rejects(memory: str) -> None:
    problems = problems_of({**MINIMAL, "resources": {"server": {"memory": memory}}})
    assert len(problems) == 1 and problems[0].startswith("resources.server.memory: must be an LXD")


@pytest.mark.parametrize("cpu", [1, 16, "2", "0-3", "0,2", "0-1,4-5"])
def test_cpu_limits_lxd_accepts(cpu: object) -> None:
    validate(source_from_dict({**MINIMAL, "resources": {"defaults": {"cpu": cpu}}}))


@pytest.mark.parametrize("cpu", [0, -1, "0", "a", "1-", "1.5", True])
def test_cpu_limits_lxd_rejects(cpu: object) -> None:
    problems = problems_of({**MINIMAL, "resources": {"defaults": {"cpu": cpu}}})
    assert len(problems) == 1 and problems[0].startswith("resources.defaults.cpu: must be")


def test_every_topology_kind_validates_its_own_parameters() -> None:
    assert problems_of({"name": "x", "topology": {"kind": "fat-tree", "spines": 2}}) == [
        "topology.spines: unknown key"
    ]
    validate(source_from_dict({"name": "x", "topology": {"kind": "fat-tree", "k": 6}}))
    # an unknown kind does not also complain about the parameters of no kind
    assert problems_of({"name": "x", "topology": {"kind": "ring", "size": 3}}) == [
        "topology.kind: must be one of: clos, explicit, fat-tree, leaf-spine, linear"
    ]


def test_recipes_come_from_the_recipes_dir(tmp_path: Path) -> None:
    (tmp_path / "server.yaml").write_text("name: server\n")
    problems = problems_of(MINIMAL, recipes_dir=tmp_path)
    assert problems == ["images.switch: no image recipe named 'switch' (expected images/recipes/switch.yaml)"]
    assert (RECIPES_DIR / "server.yaml").is_file()  # the shipped defaults exist


def test_placement_file_is_relative_to_the_lab_file(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\nassignment: {}\n", "layout.yaml")
    path = write(
        tmp_path, "name: pf\ntopology: {kind: linear}\nplacement: {strategy: file, file: layout.yaml}\n"
    )
    assert validate(read_lab_file(path)).placement_file == tmp_path / "layout.yaml"


def test_schema_errors_skip_semantic_checks_of_the_same_section() -> None:
    # hosts[1] has a wrong type: its duplicate-name check would compare garbage, so it is skipped;
    # the images section is fine and still checked in the same stage
    problems = problems_of(
        {**MINIMAL, "hosts": [{"name": "a"}, {"name": "a", "capacity": "x"}], "images": {"server": "nope"}}
    )
    assert problems == [
        "hosts[1].capacity: must be an integer",
        "images.server: no image recipe named 'nope' (expected images/recipes/nope.yaml)",
    ]
