"""The nodes stage's spec: which nodes get /dev/net/tun (every image that runs Open vSwitch)."""

from __future__ import annotations

import pytest

from cdk.stages.nodes import image_runs_ovs


@pytest.mark.parametrize(
    ("recipe", "runs_ovs"),
    [("server", False), ("switch", True), ("aca", True), ("alcor-service", False), ("ignite", False)],
)
def test_images_that_run_ovs_are_found_through_their_parents(recipe: str, runs_ovs: bool) -> None:
    assert image_runs_ovs(recipe) is runs_ovs
