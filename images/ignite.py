"""Which Apache Ignite distributions an Alcor deployment can run on (the `ignite_dist` input).

Read from the sources:
- Alcor (futurewei-cloud/alcor 21f11b5) builds against ignite-core 2.10.0 (lib/pom.xml) and
  opens transactions on caches it creates without a configuration, so ATOMIC, Ignite's default:
  vpc_manager's VxlanRangeRepository.createRange/allocateVxlanKey run
  `cache.getTransaction().start()` around a cache made by `getOrCreateCache(className)`
  (lib/.../db/ignite/IgniteClientDbCache.java); indexed caches get a ClientCacheConfiguration
  without an atomicity mode, ATOMIC too.
- Ignite 2.15.0 forbids operations on atomic caches inside transactions by default
  (IGNITE-8801: CacheOperationContext.DFLT_ALLOW_ATOMIC_OPS_IN_TX = false, checked server side in
  GridCacheGateway.checkAtomicOpsInTx, thin clients included); the system property
  IGNITE_ALLOW_ATOMIC_OPS_IN_TX=true still allows them, and the ignite image sets it for 2.15.
  Ignite 2.16.0 removed the property (IGNITE-20579): Alcor's transactions fail there, and a
  cache template cannot help the caches created with a configuration.
- The image runs Java 17, supported from Ignite 2.13.0 (its release notes: "Added support for
  JDK 17").
So: 2.13.x and 2.14.x as they are, 2.15.x with the property; anything else is refused before
the image build starts.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

IGNITE_DIST = "ignite_dist"
#: (major, minor) ranges accepted: [first, last]
FIRST = (2, 13)
LAST = (2, 15)
SUPPORTED = "2.13.x to 2.15.x"
#: from this release on, atomic operations inside transactions need the property
NEEDS_ATOMIC_OPS_FLAG = (2, 15)
CORE_JAR = re.compile(r"(?:^|/)libs/ignite-core-(\d+)\.(\d+)\.(\d+)[^/]*\.jar$")


def version_of(dist: Path) -> tuple[int, int, int] | None:
    """The version of an unpacked apache-ignite-*-bin directory or its .zip (from libs/ignite-core-*.jar)."""
    if dist.is_dir():
        names = [str(p.relative_to(dist)) for p in dist.glob("libs/ignite-core-*.jar")]
    elif zipfile.is_zipfile(dist):
        with zipfile.ZipFile(dist) as archive:
            names = archive.namelist()
    else:
        return None
    for name in names:
        match = CORE_JAR.search(name)
        if match:
            major, minor, patch = (int(g) for g in match.groups())
            return major, minor, patch
    return None


def ignite_dist_problems(dist: Path) -> list[str]:
    """Why `dist` cannot serve Alcor (empty: it can)."""
    version = version_of(dist)
    if version is None:
        return [f"{dist} holds no libs/ignite-core-<version>.jar: not an Apache Ignite binary distribution"]
    shown = ".".join(map(str, version))
    if version[:2] < FIRST:
        return [f"Ignite {shown} does not run on the image's Java 17 (Ignite supports it from 2.13.0)"]
    if version[:2] > LAST:
        return [f"Ignite {shown} refuses operations on atomic caches inside transactions, which Alcor "
                "runs (vpc_manager VxlanRangeRepository on caches created ATOMIC); 2.16 removed the "
                "IGNITE_ALLOW_ATOMIC_OPS_IN_TX switch that 2.15 still has"]
    return []
