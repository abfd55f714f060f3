"""How distrilab reaches a host's LXD: unix socket locally, TLS with a client certificate remotely."""

from __future__ import annotations

import multiprocessing
import ssl
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from cdk.errors import DistrilabError
from cdk.model import Host
from modules.lxd_client import connect, endpoint_for, ensure_client_cert


def test_local_hosts_use_the_unix_socket() -> None:
    assert endpoint_for(None).url is None
    assert endpoint_for(Host("local")).remote is False
    assert endpoint_for({"name": "h1", "kind": "local", "address": None}).url is None


def test_remote_hosts_use_tls_with_distrilab_client_cert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTRILAB_LXD_CERTS", str(tmp_path))
    ep = endpoint_for(Host("h2", kind="ssh", address="198.51.100.7"))
    assert ep.url == "https://198.51.100.7:8443"
    assert ep.cert == (tmp_path / "client.crt", tmp_path / "client.key")
    assert ep.verify is False  # nothing pinned yet
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "h2.crt").write_text("pem")
    assert (
        endpoint_for({"name": "h2", "kind": "aws", "address": "2001:db8::7"}).url
        == "https://[2001:db8::7]:8443"
    )
    assert (
        endpoint_for({"name": "h2", "kind": "aws", "address": "2001:db8::7"}).verify
        == tmp_path / "servers" / "h2.crt"
    )


def test_remote_host_without_address_is_a_user_error() -> None:
    with pytest.raises(DistrilabError, match="needs an address"):
        endpoint_for({"name": "h3", "kind": "ssh"})


def test_client_certificate_is_made_once(tmp_path: Path) -> None:
    crt, key = ensure_client_cert(tmp_path / "certs")
    first = crt.read_bytes()
    assert b"BEGIN CERTIFICATE" in first and oct(key.stat().st_mode & 0o777) == "0o600"
    assert ensure_client_cert(tmp_path / "certs")[0].read_bytes() == first


def test_hosts_asking_for_the_certificate_at_once_get_one_matching_pair(tmp_path: Path) -> None:
    # every host's stage is its own process on a lab's first apply; unlocked, two openssl runs left
    # one's key beside the other's certificate and TLS failed "KEY_VALUES_MISMATCH" (CI)
    certs = tmp_path / "certs"
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
        pairs = set(pool.map(ensure_client_cert, [certs] * 16))
    assert pairs == {(certs / "client.crt", certs / "client.key")}
    ssl.create_default_context().load_cert_chain(certs / "client.crt", certs / "client.key")
    assert sorted(p.name for p in certs.iterdir()) == ["client.crt", "client.crt.lock", "client.key"]


def test_missing_socket_says_how_to_start_lxd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LXD_DIR", str(tmp_path))
    with pytest.raises(DistrilabError, match=r"modules\.lxd_host ensure"):
        connect()


@pytest.mark.e2e
def test_local_daemon_answers() -> None:
    client = connect()
    assert client.trusted and client.host_info["api_version"] == "1.0"
