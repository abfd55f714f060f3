"""What the alcor stage writes into its containers (pure): the launcher's environment, Spring's
property overrides, the address boot hook, a service's configuration hash, node registrations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from modules.alcor_spec import PROPERTIES_FILE, PUSHED_JAR_DIR, AcaNode, ServiceSpec
from modules.loadgen import alcor_api


def env_block(svc: ServiceSpec, pushed_jar: str | None, ignite_image: bool) -> str:
    """Lines appended to the image's own env file (sourced by sh, so they win over its defaults).

    The image's JAVA_OPTS / JVM_OPTS are kept and `java_opts` is appended (the JVM takes the
    last -Xmx), because the image's flags open the JDK internals Ignite needs on Java 17.
    """
    lines = ["", "# --- written by distrilab's alcor stage from the lab's deployment file"]
    if ignite_image:
        if svc.java_opts:
            lines.append(f'JVM_OPTS="$JVM_OPTS {_dq(svc.java_opts)}"')
        lines.append(f"IGNITE_CLIENT_PORT={svc.port}")
        return "\n".join(lines) + "\n"
    jar = f"{PUSHED_JAR_DIR}/{pushed_jar}" if pushed_jar else (svc.jar or "")
    values = {
        "ALCOR_SERVICE": svc.name,
        "ALCOR_JAR": jar,
        "ALCOR_PORT": str(svc.port),
        "ALCOR_OVERRIDES": PROPERTIES_FILE,
        "ALCOR_HEALTH_PATH": svc.health.path,
    }
    lines += [f"{key}={_shell_quote(value)}" for key, value in values.items()]
    if svc.java_opts:
        lines.append(f'JAVA_OPTS="$JAVA_OPTS {_dq(svc.java_opts)}"')
    return "\n".join(lines) + "\n"


def _dq(text: str) -> str:
    """Safe inside double quotes in sh."""
    return "".join("\\" + c if c in '"\\$`' else c for c in text)


def properties_file(svc: ServiceSpec) -> str:
    """The Spring overrides in java.util.Properties syntax, sorted."""
    lines = ["# written by distrilab's alcor stage from the lab's deployment file"]
    lines += [
        f"{_escape_property(k)}={_escape_property(v, value=True)}" for k, v in sorted(svc.properties.items())
    ]
    return "\n".join(lines) + "\n"


def management_mac(lab: str, service: str) -> str:
    """A fixed MAC for a service's eth0, in LXD's own 00:16:3e range (Xensource's OUI, which LXD
    gives its containers: not a locally administered address), so it never changes across applies."""
    digest = hashlib.sha256(f"{lab}/{service}".encode()).digest()
    return "00:16:3e:" + ":".join(f"{b:02x}" for b in digest[:3])


def boot_hook(svc: ServiceSpec) -> str:
    """Static management address on eth0, applied at every boot (no DHCP on the management bridge)."""
    return f"#!/bin/sh\nip link set eth0 up\nip addr replace {svc.address} dev eth0\n"


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _escape_property(text: str, value: bool = False) -> str:
    out = text.replace("\\", "\\\\").replace("\n", "\\n")
    if not value:
        out = out.replace("=", "\\=").replace(":", "\\:").replace(" ", "\\ ")
    return out


def service_hash(svc: ServiceSpec, image_fingerprint: str | None, jar_digest: str | None) -> str:
    """Everything that makes a service container what it is; a change means recreate it.

    Covers the whole service spec (its files are pure functions of it), the image and the jar's
    content when the jar comes from jar_dir. Health settings and the level are left out: changing
    how a service is waited for does not change the service.
    """
    fields = dataclasses.asdict(svc)
    for key in ("health", "level", "depends_on"):
        fields.pop(key)
    payload = {"service": fields, "image": image_fingerprint, "jar_digest": jar_digest, "layout": 1}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def host_info(node: AcaNode, mac: str | None) -> dict[str, Any]:
    """The node manager's registration body (the one builder: modules/loadgen/alcor_api.py)."""
    return alcor_api.host_info(node.node_id, node.name, node.local_ip, node.data_path_ip, mac,
                               node.interface, node.server_port, node.host_dvr_mac)


def parse_env(text: str) -> dict[str, str]:
    """KEY=value lines (values optionally single- or double-quoted) -> dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def update_env(text: str, values: dict[str, str]) -> str:
    """Set KEY=value lines in an env file, keeping every other line (and comment) as it is."""
    lines = text.splitlines()
    seen = set()
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in values:
            lines[i] = f"{key}={values[key]}"
            seen.add(key)
    lines += [f"{k}={v}" for k, v in values.items() if k not in seen]
    return "\n".join(lines) + "\n"


def forward_devices(svc: ServiceSpec) -> dict[str, dict[str, str]]:
    """One LXD proxy device per local forward: listens on the container's loopback, connects
    from the host's side (which routes to the management network) to the target.

    Why: Alcor's services reach Ignite at ignite.host:ignite.port only when ignite.host is the
    literal `localhost`; any other value takes the Kubernetes address finder and the service
    does not start ("IgniteClient is null": lib/.../common/db/ignite/IgniteConfiguration.java,
    getThinIgniteClient, alcor 21f11b5). Older Alcor (host:port for any value) works the same."""
    return {
        f"fwd-{port}": {"type": "proxy", "bind": "instance", "listen": f"tcp:127.0.0.1:{port}",
                        "connect": f"tcp:{target}"}
        for port, target in sorted(svc.local_forwards.items())
    }

