"""The Alcor API test double answers like Alcor (shapes, status codes, Spring error bodies)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.doubles.alcor_api import AlcorApiDouble


def call(alcor: AlcorApiDouble, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(
        alcor.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post(alcor: AlcorApiDouble, path: str, doc: Any) -> None:
    """Create something in the double; it must answer 201."""
    status, answer = call(alcor, "POST", path, doc)
    assert status == 201, answer


def test_create_chain_and_state(alcor: AlcorApiDouble) -> None:
    assert call(alcor, "POST", "/segments/createDefaultTable") == (200, None)
    status, doc = call(alcor, "POST", "/project/p1/vpcs", {"network": {"id": "v1", "cidr": "10.0.0.0/16"}})
    assert status == 201 and doc["network"]["id"] == "v1" and doc["network"]["project_id"] == "p1"
    assert doc["network"]["status"] == "ACTIVE" and doc["network"]["tenant_id"] == "p1"
    status, doc = call(
        alcor,
        "POST",
        "/project/p1/subnets",
        {"subnet": {"id": "s1", "network_id": "v1", "cidr": "10.0.1.0/24", "ip_version": 4}},
    )
    assert status == 201
    assert doc["subnet"]["allocation_pools"] == [{"start": "10.0.1.1", "end": "10.0.1.254"}]
    assert doc["subnet"]["gateway_ip"] == "10.0.1.1"
    status, doc = call(
        alcor,
        "POST",
        "/nodes",
        {
            "host_info": {
                "node_id": "n-1",
                "node_name": "node1",
                "local_ip": "198.18.0.1",
                "mac_address": "02:00:00:00:00:01",
            }
        },
    )
    assert status == 201 and doc["host_info"]["node_name"] == "node1"
    port = {"id": "port1", "network_id": "v1", "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.1.5"}]}
    status, doc = call(alcor, "POST", "/project/p1/ports", {"port": port})
    assert status == 201 and doc["port"]["mac_address"]
    status, doc = call(alcor, "PUT", "/project/p1/ports/port1", {"port": {"binding:host_id": "node1"}})
    assert status == 200 and doc["port"]["binding:host_id"] == "node1"
    assert call(alcor, "GET", "/project/p1/vpcs/v1")[1]["network"]["subnets"] == ["s1"]
    assert len(alcor.timings) == 7 and all(t.seconds >= 0 for t in alcor.timings)


def test_errors_as_alcor_gives_them(alcor: AlcorApiDouble) -> None:
    status, doc = call(
        alcor, "POST", "/project/p1/subnets", {"subnet": {"network_id": "nope", "cidr": "10.0.1.0/24"}}
    )
    assert status == 500 and doc["error"] == "Internal Server Error"
    assert doc["message"].endswith("FallbackException: fallback request")
    assert doc["path"] == "/project/p1/subnets"
    assert set(doc) == {"timestamp", "status", "error", "message", "path"}

    call(alcor, "POST", "/project/p1/vpcs", {"network": {"id": "v1", "cidr": "10.0.0.0/16"}})
    port = {"network_id": "v1", "fixed_ips": [{"subnet_id": "unknown", "ip_address": "10.0.1.5"}]}
    status, doc = call(alcor, "POST", "/project/p1/ports", {"port": port})
    assert (status, doc["message"]) == (500, "Get SubnetEntity exception")
    status, doc = call(alcor, "POST", "/project/p1/ports", {"port": {"fixed_ips": []}})
    assert (status, doc["message"]) == (412, "Network id is required")
    status, doc = call(
        alcor,
        "POST",
        "/project/p1/ports",
        {"port": {"network_id": "v1", "fixed_ips": [{"ip_address": "10.0.1.999"}]}},
    )
    assert (status, doc["message"]) == (412, "Fixed ips invalid")
    assert call(alcor, "PUT", "/project/p1/ports/missing", {"port": {}})[0] == 404
    assert call(alcor, "POST", "/project/p1/security-groups", {})[0] == 412
    status, doc = call(alcor, "POST", "/nodes", {"host_info": {"node_id": "x", "local_ip": "not-an-ip"}})
    assert (status, doc["message"]) == (500, "Invalid IP address format")
    assert call(alcor, "POST", "/project/p1/vpcs", {"network": {"mtu": 10}})[0] == 500
    assert call(alcor, "GET", "/no/such/path")[0] == 404
    # v1 made its VXLAN partition on demand (SegmentServiceImpl.addVxlanEntity): the default
    # table's one createRange batch now meets an existing range (VxlanRangeRepository.createRange)
    status, doc = call(alcor, "POST", "/segments/createDefaultTable")
    assert (status, doc["message"]) == (409, "network range already exists")


def test_the_default_segment_table_is_made_once(alcor: AlcorApiDouble) -> None:
    assert call(alcor, "POST", "/segments/createDefaultTable") == (200, None)
    status, doc = call(alcor, "POST", "/segments/createDefaultTable")
    assert (status, doc["message"]) == (409, "network range already exists")


def raw(alcor: AlcorApiDouble, method: str, path: str) -> tuple[int, bytes]:
    req = urllib.request.Request(alcor.url + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_nodes_as_the_node_manager_keeps_them(alcor: AlcorApiDouble) -> None:
    node = {"node_id": "n1", "node_name": "a", "local_ip": "10.0.0.1", "data-path-ip": "10.1.0.1"}
    assert call(alcor, "GET", "/nodes/n1") == (200, {"host_info": None})  # missing: 200, null
    assert call(alcor, "POST", "/nodes", {"host_info": node})[0] == 201
    # the same id again replaces it, silently (NodeServiceImpl.createNodeInfo: put)
    status, doc = call(alcor, "POST", "/nodes", {"host_info": {**node, "node_name": "b"}})
    assert status == 201 and call(alcor, "GET", "/nodes/n1")[1]["host_info"]["node_name"] == "b"
    assert [n["node_id"] for n in call(alcor, "GET", "/nodes")[1]["nodeInfos"]] == ["n1"]
    # PUT: the body's id must be the path's (verifyParameterValid); unknown ids are 500s
    assert call(alcor, "PUT", "/nodes/n1", {"host_info": {**node, "node_id": "n2"}})[0] == 500
    assert call(alcor, "PUT", "/nodes/n9", {"host_info": {**node, "node_id": "n9"}})[0] == 500
    status, doc = call(alcor, "PUT", "/nodes/n1", {"host_info": {**node, "local_ip": "10.0.0.9"}})
    assert status == 200 and doc["host_info"]["local_ip"] == "10.0.0.9"
    assert raw(alcor, "DELETE", "/nodes/n1") == (200, b"{Node(Node) Id: n1}")
    assert call(alcor, "DELETE", "/nodes/n1")[0] == 500
    status, doc = call(alcor, "POST", "/nodes/bulk", {"host_infos": [node, {**node, "node_id": "n2"}]})
    assert status == 200 and [n["node_id"] for n in doc] == ["n1", "n2"]  # a bare list


def test_ports_in_bulk(alcor: AlcorApiDouble) -> None:
    call(alcor, "POST", "/project/p1/vpcs", {"network": {"id": "v1", "cidr": "10.0.0.0/16"}})
    call(alcor, "POST", "/project/p1/subnets",
         {"subnet": {"id": "s1", "network_id": "v1", "cidr": "10.0.1.0/24", "ip_version": 4}})
    ports = [{"id": f"p{i}", "network_id": "v1",
              "fixed_ips": [{"subnet_id": "s1", "ip_address": f"10.0.1.{i}"}]} for i in (5, 6)]
    status, doc = call(alcor, "POST", "/project/p1/ports/bulk", {"ports": ports})
    assert status == 201 and [p["id"] for p in doc["ports"]] == ["p5", "p6"]


def test_injected_failures() -> None:
    with AlcorApiDouble(error_rate=1.0, error_status=503) as alcor:
        status, doc = call(alcor, "POST", "/segments/createDefaultTable")
        assert (status, doc["message"]) == (503, "injected failure")
