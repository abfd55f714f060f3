"""TEST DOUBLE, not Alcor: a stand-in for Alcor's service jars, compiled with javac at test time.

Alcor's Java build (Maven Central) and Apache Ignite cannot be fetched on the test machine, so the
Alcor stage's tests deploy this jar under each service's jar name instead. It is started exactly
like a Spring Boot jar by the `alcor-service` image's launcher and reports what it was given; see
StandIn.java for what it serves.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "StandIn.java"


def build_jar(out_dir: Path) -> Path:
    """Compile StandIn.java into `out_dir/alcor-standin-<hash>.jar` (reused when the source is unchanged)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    jar = out_dir / f"alcor-standin-{digest}.jar"
    if jar.exists():
        return jar
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if not javac or not jar_tool:
        raise RuntimeError("the stand-in needs a JDK (javac and jar on PATH)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        classes = Path(tmp) / "classes"
        # --release 17: the alcor-service image runs Java 17
        subprocess.run([javac, "--release", "17", "-d", str(classes), str(SOURCE)], check=True)
        partial = out_dir / f".{jar.name}.tmp"
        manifest = ["--main-class", "StandIn", "-C", str(classes), "."]
        subprocess.run([jar_tool, "--create", "--file", str(partial), *manifest], check=True)
        partial.replace(jar)
    return jar


def jar_dir_for(deployment_jars: dict[str, str], out_dir: Path) -> Path:
    """A directory holding the stand-in under every jar name a deployment asks for (hard links)."""
    jar = build_jar(out_dir)
    target = out_dir / f"jars-{jar.stem}"
    target.mkdir(parents=True, exist_ok=True)
    for name in sorted(set(deployment_jars.values())):
        path = target / name
        if not path.exists():
            path.hardlink_to(jar)
    return target
