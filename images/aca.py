"""The `aca` image's build options: `--aca-source`, `--aca-deps` and `--without-aca-binary`.

The `aca` recipe compiles the Alcor Control Agent in two steps, each needing one input:
`aca-third-party` (input `aca_deps`: cppkafka, marl, the Pulsar client and OVS 2.9 sources that
Debian does not ship) and `build-aca` (input `aca_source`: an alcor-control-agent checkout).
These helpers turn the friendly flags into the builder's `inputs` and `skip_missing`, and check a
checkout on the host before a build spends minutes installing packages.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

from cdk.errors import ImageBuildError

ACA_SOURCE = "aca_source"
ACA_DEPS = "aca_deps"
#: ACA's top-level CMakeLists.txt declares this project; the binary has the same name
ACA_PROJECT = "AlcorControlAgent"
#: where the agent's proto schema lives in a checkout (the `alcor` git submodule)
ACA_SCHEMA_DIR = Path("alcor/schema/proto3")
#: what `aca_deps` must hold (see images/recipes/files/aca/build-aca-deps)
ACA_DEPS_LAYOUT = {
    "cppkafka": "a checkout of mfontanini/cppkafka",
    "marl": "a checkout of google/marl",
    "pulsar": "apache-pulsar-client*.deb and apache-pulsar-client-dev*.deb (ACA uses 2.8.1)",
    "openvswitch": "an Open vSwitch 2.9.x source tree (ACA links its libopenvswitch.a)",
}


@dataclass(frozen=True)
class AcaBuildOptions:
    """What the builder gets: inputs by name and the inputs whose steps are skipped."""

    inputs: dict[str, Path] = field(default_factory=dict)
    skip: tuple[str, ...] = ()


def aca_source_problems(path: Path) -> list[str]:
    """Why `path` is not a buildable alcor-control-agent checkout (empty when it is)."""
    path = Path(path)
    if not path.is_dir():
        return [f"{path}: not a directory"]
    cmake = path / "CMakeLists.txt"
    if not cmake.is_file():
        return [f"{cmake}: missing (expected an alcor-control-agent checkout)"]
    problems = []
    if not re.search(rf"project\s*\(\s*{ACA_PROJECT}\b", cmake.read_text(errors="replace")):
        problems.append(f"{cmake}: does not declare project({ACA_PROJECT})")
    if not (path / "src" / "CMakeLists.txt").is_file():
        problems.append(f"{path / 'src' / 'CMakeLists.txt'}: missing")
    if not any((path / ACA_SCHEMA_DIR).glob("*.proto")):
        problems.append(
            f"{path / ACA_SCHEMA_DIR}: no .proto files (the alcor submodule is not checked out; "
            "run 'git submodule update --init' in the checkout)"
        )
    return problems


def aca_deps_problems(path: Path) -> list[str]:
    """Why `path` does not hold ACA's third-party sources (empty when it does)."""
    path = Path(path)
    if not path.is_dir():
        return [f"{path}: not a directory"]
    problems = [
        f"{path / name}: missing ({what})"
        for name, what in ACA_DEPS_LAYOUT.items()
        if not (path / name).exists()
    ]
    if (path / "pulsar").is_dir() and not any((path / "pulsar").glob("apache-pulsar-client*.deb")):
        problems.append(f"{path / 'pulsar'}: no apache-pulsar-client*.deb")
    return problems


def aca_build_options(
    aca_source: Path | None = None, aca_deps: Path | None = None, without_aca_binary: bool = False
) -> AcaBuildOptions:
    """Resolve the friendly flags; raises ImageBuildError naming the flag and what is wrong."""
    if without_aca_binary:
        if aca_source or aca_deps:
            raise ImageBuildError(
                "--without-aca-binary cannot be combined with --aca-source or --aca-deps",
                hint="drop --without-aca-binary to build ACA, or drop the inputs to build without it",
            )
        return AcaBuildOptions(skip=(ACA_DEPS, ACA_SOURCE))
    inputs: dict[str, Path] = {}
    for flag, name, value, check in (
        ("--aca-source", ACA_SOURCE, aca_source, aca_source_problems),
        ("--aca-deps", ACA_DEPS, aca_deps, aca_deps_problems),
    ):
        if value is None:
            continue
        problems = check(Path(value))
        if problems:
            raise ImageBuildError(
                f"{flag} {value}: " + "; ".join(problems),
                hint=f"see docs/images-aca-alcor.md for what {flag} must point to",
            )
        inputs[name] = Path(value).resolve()
    return AcaBuildOptions(inputs=inputs)


def add_aca_arguments(parser: argparse.ArgumentParser) -> None:
    """The `aca` flags of `distrilab image build` (aliases of --input/--without for the aca recipe)."""
    group = parser.add_argument_group("aca image")
    group.add_argument(
        "--aca-source", type=Path, metavar="PATH",
        help="alcor-control-agent checkout (with its alcor submodule) to compile into the image",
    )
    group.add_argument(
        "--aca-deps", type=Path, metavar="PATH",
        help="directory with cppkafka/, marl/, pulsar/*.deb and openvswitch/ (2.9.x) sources",
    )
    group.add_argument(
        "--without-aca-binary", action="store_true",
        help="build the aca image without compiling ACA (its service then reports the missing binary)",
    )


def aca_options_from_args(args: argparse.Namespace) -> AcaBuildOptions:
    """AcaBuildOptions from parsed `add_aca_arguments` flags (absent flags count as not given)."""
    return aca_build_options(
        aca_source=getattr(args, "aca_source", None),
        aca_deps=getattr(args, "aca_deps", None),
        without_aca_binary=bool(getattr(args, "without_aca_binary", False)),
    )
