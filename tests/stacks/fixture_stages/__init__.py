"""Two stages for stack tests, independent of LXD: `markers` and `manifest`.

Their builders are pure functions of the lab (like cdk/stages/*), and their reconciler
(`files.py`) is a real Reconciler that converges a folder of marker files, so terraform's
create/replace/destroy flow runs for real without touching the shared LXD daemon.
Each spec names its folder with `root`; tests set it through the environment variable
DISTRILAB_TEST_ROOT at synth time.
"""

from __future__ import annotations

from cdk.stages import Stage

MODULE = "tests.stacks.fixture_stages.files"
FIXTURE_STAGES = (
    Stage("markers", MODULE, "tests.stacks.fixture_stages.markers"),
    Stage("manifest", MODULE, "tests.stacks.fixture_stages.manifest"),
)
