"""The nodes stage's spec: which nodes get /dev/net/tun (every image that runs Open vSwitch)."""

from __future__ import annotations

import dataclasses

import pytest

from cdk.errors import DistrilabError
from cdk.lab import recipe_packages
from cdk.pipeline import lab_from_dict
from cdk.stages.nodes import image_runs_ovs


@pytest.mark.parametrize(
    ("recipe", "runs_ovs"),
    [("server", False), ("switch", True), ("aca", True), ("alcor-service", False), ("ignite", False)],
)
def test_images_that_run_ovs_are_found_through_their_parents(recipe: str, runs_ovs: bool) -> None:
    lab = dataclasses.replace(lab_from_dict({"name": "ovs", "topology": {"kind": "linear"}}),
                              image_packages=recipe_packages([recipe]))
    assert image_runs_ovs(lab, recipe) is runs_ovs


def test_the_lab_loads_its_images_packages_and_builders_read_no_recipe() -> None:
    lab = lab_from_dict({"name": "ovs", "topology": {"kind": "linear"}})
    assert set(lab.image_packages) == {"server", "switch"}
    assert "openvswitch-switch" in lab.image_packages["switch"]
    with pytest.raises(DistrilabError, match="no packages known for image 'aca'"):
        image_runs_ovs(lab, "aca")
