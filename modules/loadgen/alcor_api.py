"""Alcor's REST API as the load controller calls it: paths, request bodies, success keys.

Facts, read from futurewei-cloud/alcor at commit 21f11b5 (2023-03-31; the pseudo-controller last
changed in a0e72b4 "Test Controller Enhancements (#743)" and 8ad1596 (#749)):

- Ports (each service's `src/main/resources/application.properties`, `server.port`): vpc_manager
  9001, subnet_manager 9002, route_manager 9003, private_ip_manager 9004, mac_manager 9005,
  port_manager 9006, node_manager 9007, security_group_manager 9008 (network_acl_manager also
  9008), api_gateway 9009, data_plane_manager 9010, elastic_ip_manager 9011, quota_manager 9012,
  network_config_manager 9014, gateway_manager 9015. The Kubernetes manifests
  (`kubernetes/services/*.yaml`) run every service on 8080 inside its pod instead.
- The API gateway (`services/api_gateway/.../route/*RouteConfiguration.java`) forwards
  `/project/*/vpcs[/*]`, `/project/*/subnets[/*]`, `/project/*/ports[/*]` and
  `/project/*/security-groups[/*]` to the owning service, so one base URL (the gateway) serves the
  create steps; `/nodes` and `/segments/...` are not routed there and go to node_manager /
  vpc_manager directly.
- Create VPC: `POST /project/{project_id}/vpcs`, body `{"network": {...}}` (VpcWebRequestJson;
  fields cidr, id, name, project_id, tenant_id, mtu, admin_state_up, ... in
  `web/.../entity/vpc/VpcWebRequest.java`), 201 with `{"network": VpcEntity}`
  (`services/vpc_manager/.../controller/VpcController.java: createVpcState`). An id is generated
  when absent. `mtu < 68` or an unknown `provider:network_type` -> ResourceNotValidException
  ("request resource is invalid"), which no handler maps, so Spring answers 500.
  VPC creation allocates a VXLAN segment: Alcor's own scripts first call
  `POST /segments/createDefaultTable` on vpc_manager (SegmentController; void -> 200, empty body);
  a second call finds the VXLAN ranges present (VxlanRangeRepository.createRange) and answers
  409 "network range already exists" (NetworkRangeExistException).
- Create subnet: `POST /project/{project_id}/subnets`, `{"subnet": {"id", "name", "network_id",
  "cidr", "ip_version", ...}}` (SubnetWebRequest: `network_id` is the VPC id), 201 with
  `{"subnet": SubnetEntity}` including `allocation_pools` and `gateway_ip`. The subnet manager asks
  vpc_manager `GET /project/{p}/vpcs/{vpc_id}`; an unknown VPC (`{"network": null}`) raises
  FallbackException("fallback request") in a CompletableFuture, rethrown as `new Exception(e)`:
  500, message "java.util.concurrent.CompletionException:
  com.futurewei.alcor.common.exception.FallbackException: fallback request".
- Create security group: `POST /project/{project_id}/security-groups`, `{"security_group": {...}}`
  (SecurityGroupJson), 201 with `{"security_group": ...}`; no body -> 412 "Security group is
  required" (SecurityGroupRequired's @ResponseStatus).
- Create port: `POST /project/{project_id}/ports`, `{"port": PortEntity}` with `network_id`,
  `fixed_ips: [{"subnet_id", "ip_address"}]`, `security_groups`, `binding:host_id`, ... 201 with
  `{"port": ...}`. Missing network_id -> 412 "Network id is required"; a fixed IP with neither
  subnet nor address, or a malformed address -> 412 "Fixed ips invalid"; an unknown subnet ->
  GetSubnetEntityException, 500 "Get SubnetEntity exception" (port_manager `exception/*.java`
  @ResponseStatus reasons). Update: `PUT /project/{project_id}/ports/{port_id}` with
  `{"port": {...}}`, 200; unknown port -> 404 "Port not found".
- `binding:host_id` is matched against the node manager's `node_name`
  (port_manager `processor/NodeProcessor.java`), not its node_id.
- Register node: `POST /nodes` on node_manager, `{"host_info": {"node_id", "node_name", "local_ip",
  "mac_address", "veth", "server_port", "host_dvr_mac", "ncm_id"}}` (NodeInfoJson/NodeInfo), 201
  with `{"host_info": ...}`; a local_ip that is not dotted IPv4 -> InvalidDataException("Invalid
  IP address format"), unmapped, 500. Examples: `scripts/busybox-ping-test-alcor-apis/*/01_nm_*`.
- Error bodies: the services are Spring Boot 2.1.6 (root pom.xml parent), whose default error
  body is `{"timestamp": "...", "status": N, "error": "<reason phrase>", "message": "...",
  "path": "/..."}`; vpc_manager's CustomGlobalExceptionConfiguration maps
  ParameterNullOrEmptyException/ResourceNullException to 400 and ResourceNotFoundException to 404.
- The pseudo-controller (`services/pseudo_controller/.../alcor_http_api_test/alcor_http_api_test.java`)
  builds tenants x projects x VPCs x subnets payloads, then runs three phases (all VPCs, all
  subnets, all ports), each paced by a Guava RateLimiter at `call_api_rate` per second on a thread
  pool of the same size, and counts a call as a success when the response JSON has the
  `network` / `subnet` / `port` key (status codes are only printed). It never sends security
  groups, node registrations or bindings; its subnet URL takes `project_id` from the subnet
  payload, which it never sets (so it posts to `/project/null/subnets`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DEFAULT_PORTS: dict[str, int] = {
    "vpc_manager": 9001,
    "subnet_manager": 9002,
    "port_manager": 9006,
    "node_manager": 9007,
    "security_group_manager": 9008,
    "api_gateway": 9009,
}


@dataclass(frozen=True)
class ApiCall:
    """One HTTP request to Alcor and how to tell it succeeded."""

    service: str  # which service's base URL it goes to (scenario.SERVICES)
    method: str
    path: str
    body: bytes
    expect_key: str | None  # top-level key a successful response carries; None: any 2xx


#: One encoder for every body: json.dumps with any option builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _json(doc: dict[str, Any]) -> bytes:
    return _ENCODER.encode(doc).encode()


def create_segment_table() -> ApiCall:
    return ApiCall("vpc_manager", "POST", "/segments/createDefaultTable", b"", None)


#: the data-plane manager's own host DVR MAC (data_plane_manager ResourceService.HOST_DVR_MAC)
HOST_DVR_MAC = "fe:16:11:00:00:00"
#: ACA's gRPC server port (alcor-control-agent src/aca_main.cpp, -s default; the node manager's
#: NodeManagerConstant.GRPC_SERVER_PORT)
ACA_GRPC_PORT = 50001


def host_info(
    node_id: str, name: str, local_ip: str, data_path_ip: str, mac: str | None, veth: str,
    server_port: int = ACA_GRPC_PORT, host_dvr_mac: str = HOST_DVR_MAC,
) -> dict[str, Any]:
    """One node's registration (`host_info`), the only builder: the lab's alcor stage and the
    load controller both send it, so a re-registration by the controller (the node manager
    replaces a node by id: NodeServiceImpl.createNodeInfo) writes what the lab wrote.

    JSON names from web/.../entity/node/NodeInfo.java; `data-path-ip` (hyphenated) is the
    address the data-plane manager gives peers as the neighbour's tunnel end
    (data_plane_manager NeighborService.buildNeighborState: setHostIpAddress(getDataPathIp())):
    without it the neighbour is dropped. `local_ip` is where the node's ACA is reached."""
    return {
        "node_id": node_id,
        "node_name": name,
        "local_ip": local_ip,
        "mac_address": mac,
        "veth": veth,
        "server_port": server_port,
        "host_dvr_mac": host_dvr_mac,
        "data-path-ip": data_path_ip,
    }


def register_node(info: dict[str, Any]) -> ApiCall:
    return ApiCall("node_manager", "POST", "/nodes", _json({"host_info": info}), "host_info")


def create_vpc(project_id: str, tenant_id: str, vpc_id: str, name: str, cidr: str) -> ApiCall:
    network = {
        "id": vpc_id,
        "name": name,
        "description": name,
        "project_id": project_id,
        "tenant_id": tenant_id,
        "cidr": cidr,
        "admin_state_up": True,
        "port_security_enabled": True,
        "mtu": 1400,
        "revision_number": 0,
    }
    path = f"/project/{project_id}/vpcs"
    return ApiCall("vpc_manager", "POST", path, _json({"network": network}), "network")


def create_subnet(
    project_id: str, tenant_id: str, subnet_id: str, vpc_id: str, name: str, cidr: str
) -> ApiCall:
    subnet = {
        "id": subnet_id,
        "name": name,
        "project_id": project_id,
        "tenant_id": tenant_id,
        "network_id": vpc_id,
        "cidr": cidr,
        "ip_version": 4,
    }
    path = f"/project/{project_id}/subnets"
    return ApiCall("subnet_manager", "POST", path, _json({"subnet": subnet}), "subnet")


def create_security_group(project_id: str, tenant_id: str, sg_id: str, name: str) -> ApiCall:
    sg = {
        "id": sg_id,
        "name": name,
        "description": name,
        "project_id": project_id,
        "tenant_id": tenant_id,
        "security_group_rules": [],
    }
    return ApiCall(
        "security_group_manager",
        "POST",
        f"/project/{project_id}/security-groups",
        _json({"security_group": sg}),
        "security_group",
    )


def port_name(port_id: str) -> str:
    """Alcor's own device name for a port: "tap" + the id, cut to 14 characters (Nova's length).

    ACA names the OVS port it tags this way from the port id (alcor-control-agent
    include/aca_util.h: TAP_PREFIX, PORT_NAME_LEN 14, aca_get_port_name), and Alcor's pseudo
    controller names its ports the same (services/pseudo_controller/.../ncm_test/ncm_test.java:
    `("tap" + vpc_port_id).substring(0, 14)`); Linux caps interface names at 15 characters."""
    return ("tap" + port_id)[:14]


def port_json(
    project_id: str,
    tenant_id: str,
    port_id: str,
    vpc_id: str,
    subnet_id: str,
    ip: str,
    name: str,
    security_groups: list[str],
) -> str:
    """One port as JSON (PortEntity's fields)."""
    # The hot request of every run: written from a template (the same bytes the encoder makes,
    # tested), because the values are ids, names and addresses the plan generated, never text
    # that needs escaping, and a dict plus the encoder cost several times more per request.
    sgs = (
        ""
        if not security_groups
        else ',"security_groups":[' + ",".join(f'"{g}"' for g in security_groups) + "]"
    )
    return (
        f'{{"id":"{port_id}","name":"{name}","project_id":"{project_id}","tenant_id":"{tenant_id}",'
        f'"network_id":"{vpc_id}","fixed_ips":[{{"subnet_id":"{subnet_id}","ip_address":"{ip}"}}],'
        f'"admin_state_up":true,"device_id":"dev-{port_id}","device_owner":"compute:nova","fast_path":true'
        f"{sgs}}}"
    )


def create_port(project_id: str, *port: Any) -> ApiCall:
    body = f'{{"port":{port_json(project_id, *port)}}}'
    return ApiCall("port_manager", "POST", f"/project/{project_id}/ports", body.encode(), "port")


def create_ports_bulk(project_id: str, ports: list[tuple[Any, ...]]) -> ApiCall:
    """`POST /project/{p}/ports/bulk`, `{"ports": [...]}` (PortWebBulkJson), 201 `{"ports": [...]}`
    (port_manager PortController.createPortBulk); each entry the arguments of `port_json`
    after the project."""
    body = '{"ports":[' + ",".join(port_json(project_id, *port) for port in ports) + "]}"
    return ApiCall("port_manager", "POST", f"/project/{project_id}/ports/bulk", body.encode(), "ports")


def register_nodes_bulk(infos: list[dict[str, Any]]) -> ApiCall:
    """`POST /nodes/bulk`, `{"host_infos": [...]}` (BulkNodeInfoJson); 200 with a bare list of the
    nodes (node_manager NodeController.createNodeInfoBulk): no key to look for."""
    return ApiCall("node_manager", "POST", "/nodes/bulk", _json({"host_infos": infos}), None)


def bind_port(project_id: str, port_id: str, host_name: str) -> ApiCall:
    port = {"binding:host_id": host_name, "device_owner": "compute:nova", "device_id": f"dev-{port_id}"}
    path = f"/project/{project_id}/ports/{port_id}"
    return ApiCall("port_manager", "PUT", path, _json({"port": port}), "port")
