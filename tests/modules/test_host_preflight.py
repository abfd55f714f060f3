"""Host pre-flight: host keys recorded on first contact, a changed key refused unless pinned,
unreachable hosts and capacity named before anything is created (the e2e half is in
tests/e2e/test_multi_host.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cdk.model import Host
from modules.host_preflight import (
    NODES_PER_CORE,
    HostFacts,
    PreflightError,
    check_host_key,
    recorded,
    write_keys,
)

OLD = "192.0.2.50 ssh-ed25519 AAAAold"
NEW = "192.0.2.50 ssh-ed25519 AAAAnew"
PRINTS = {OLD: "SHA256:" + "o" * 43, NEW: "SHA256:" + "n" * 43}
HOST = Host(name="h1", kind="ssh", address="192.0.2.50")


def check(host: Host, known: Path, offered: list[str]) -> tuple[str, str, str] | None:
    return check_host_key(host, known, scan=lambda address: offered, fingerprint_of=PRINTS.__getitem__)


def test_first_contact_records_the_key_and_later_contacts_accept_it(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.touch()
    assert check(HOST, known, [OLD]) is None
    assert recorded(known, "192.0.2.50") == [OLD]
    assert check(HOST, known, [OLD]) is None


def test_a_changed_key_is_refused_with_the_pin_to_accept_it(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(OLD + "\n")
    problem = check(HOST, known, [NEW])
    assert problem is not None
    host, what, hint = problem
    assert host == "h1" and "CHANGED" in what and PRINTS[NEW] in hint
    assert recorded(known, "192.0.2.50") == [OLD]  # nothing learnt from a refused key


def test_pinning_the_new_key_accepts_it_and_replaces_the_record(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(OLD + "\n10.0.0.9 ssh-ed25519 AAAAother\n")
    pinned = Host(name="h1", kind="ssh", address="192.0.2.50", host_key=PRINTS[NEW])
    assert check(pinned, known, [NEW]) is None
    assert recorded(known, "192.0.2.50") == [NEW]
    assert "10.0.0.9 ssh-ed25519 AAAAother" in known.read_text()  # other hosts untouched
    wrong = Host(name="h1", kind="ssh", address="192.0.2.50", host_key="SHA256:" + "x" * 43)
    problem = check(wrong, known, [NEW])
    assert problem is not None and "not the pinned" in problem[1]


def test_an_unreachable_host_is_named_with_its_address(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.touch()
    problem = check(HOST, known, [])
    assert problem is not None and "unreachable" in problem[1] and "192.0.2.50" in problem[1]


def test_capacity_from_memory_and_cores_and_one_error_listing_every_host() -> None:
    assert HostFacts(cores=2, memory_mib=24 * 1024).node_capacity() == (24 * 1024 - 1024) // 48
    assert HostFacts(cores=1, memory_mib=512).node_capacity() == 0
    # a big machine with few cores: the cores bound it
    many = HostFacts(cores=1, memory_mib=256 * 1024)
    assert many.node_capacity() == NODES_PER_CORE < many.by_memory()
    assert many.describe() == (f"~{NODES_PER_CORE} nodes fit its 262144 MiB at 48 MiB each and its 1 core(s) "
                               f"at {NODES_PER_CORE} each")
    err = PreflightError([("h1", "unreachable", "check it"), ("h2", "too small", "add hosts")])
    text = str(err)
    assert "nothing was created" in text and "h1: unreachable" in text and "h2: too small" in text
    with pytest.raises(PreflightError):
        raise err


def test_capacities_read_from_hosts_place_the_nodes_of_hosts_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdk.pipeline import load_lab
    from modules import lab_secrets

    monkeypatch.setenv("DISTRILAB_SECRETS", str(tmp_path / "secrets"))
    lab_file = tmp_path / "cap.yaml"
    lab_file.write_text(
        "name: cap\n"
        "hosts:\n"
        "  - {name: h1, kind: ssh, address: 198.51.100.1}\n"
        "  - {name: h2, kind: ssh, address: 198.51.100.2, capacity: 500}\n"
        "topology: {kind: leaf-spine, spines: 2, leaves: 4, servers_per_leaf: 4}\n"
        "placement: {strategy: round-robin}\n"
    )
    assert lab_secrets.read_capacities("cap") == {}  # nothing read yet, nothing created
    assert not (tmp_path / "secrets").exists()
    lab_secrets.save_capacities("cap", {"h1": 3})  # h1 was read to hold 3 nodes
    lab = load_lab(lab_file, host_routes=[], capacities=lab_secrets.read_capacities("cap"))
    hosts = {h.name: h.capacity for h in lab.hosts}
    assert hosts == {"h1": 3, "h2": 500}  # a capacity the lab gives wins over a read one
    placed = list(lab.placement.assignment.values())
    assert placed.count("h1") <= 3 and placed.count("h2") == len(placed) - placed.count("h1")


def test_hosts_recorded_at_once_all_keep_their_keys(tmp_path: Path) -> None:
    # pre-flight checks hosts in parallel threads: each one's first contact must survive the others'
    known = tmp_path / "known_hosts"
    known.touch()
    addresses = [f"10.9.0.{i}" for i in range(1, 65)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda a: write_keys(known, a, [f"{a} ssh-ed25519 AAAA{a}"]), addresses))
    for address in addresses:
        assert recorded(known, address) == [f"{address} ssh-ed25519 AAAA{address}"]
    assert known.stat().st_mode & 0o777 == 0o600
