"""Shared fixtures of the stack tests: small labs built in code, isolated paths, synth helpers."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cdktn
import pytest

from bench.labgen import leaf_spine_lab
from cdk.model import Lab
from stacks.paths import REPO_ROOT, Paths
from tests.stacks.fixture_stages import FIXTURE_STAGES

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CHECKPOINT_DISABLE", "1")


def fresh_app() -> cdktn.App:
    """`cdktn.Testing.app()` in a folder removed when the tests end (without an outdir it makes a
    /tmp/cdktf.outdir.* per call that nobody removes)."""
    outdir = tempfile.mkdtemp(prefix="distrilab-synth-")
    atexit.register(shutil.rmtree, outdir, True)
    return cdktn.Testing.app(outdir=outdir)


@pytest.fixture
def two_host_lab() -> Lab:
    """2 spines, 2 leaves, 1 server per leaf, placed round-robin on hosts a and b."""
    return leaf_spine_lab("dlstk-t", hosts=("a", "b"))


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    """Provisioners run in the repo; state, specs and terraform state stay in the test's folder."""
    return Paths(
        repo=REPO_ROOT,
        python=Paths.for_repo().python,
        state_dir=tmp_path / "state",
        specs_dir=tmp_path / "specs",
        state_root=tmp_path,
        work_root=tmp_path / "terraform",
    )


@pytest.fixture
def files_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the fixture stages' reconciler writes (read by their builders at synth time)."""
    root = tmp_path / "files"
    monkeypatch.setenv("DISTRILAB_TEST_ROOT", str(root))
    return root


@pytest.fixture
def fixture_stages() -> tuple[Any, ...]:
    return FIXTURE_STAGES


def resources_of(tf_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return tf_json["resource"]["terraform_data"]


def read_stack(outdir: Path, lab: str) -> dict[str, Any]:
    return json.loads((outdir / "stacks" / lab / "cdk.tf.json").read_text())
