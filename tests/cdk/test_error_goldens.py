"""Each malformed lab in tests/cdk/errors/<case>.yaml must fail with exactly the lines of <case>.log.

The wording of every message is part of the interface: a change shows up as a diff here. After a
deliberate change, rewrite the expected files with `pytest tests/cdk --update-golden` and review the
diff. Loading a broken lab must raise LabFileError and do nothing else (no files, no commands).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdk.errors import LabFileError
from cdk.pipeline import load_lab
from tests.cdk.golden import ERRORS_DIR, FAKE_HOST_ROUTES, REPO, read_only

CASES = sorted(ERRORS_DIR.glob("*.yaml"))


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 25


def test_every_log_has_its_lab() -> None:
    orphans = [p.name for p in ERRORS_DIR.glob("*.log") if not p.with_suffix(".yaml").exists()]
    assert orphans == []


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_error_golden(case: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    monkeypatch.chdir(REPO)  # messages name the file as given: tests/cdk/errors/<case>.yaml
    with read_only(monkeypatch), pytest.raises(LabFileError) as caught:
        load_lab(case.relative_to(REPO), host_routes=FAKE_HOST_ROUTES)
    text = str(caught.value) + "\n"
    assert all(p.file == str(case.relative_to(REPO)) for p in caught.value.problems)
    expected = case.with_suffix(".log")
    if request.config.getoption("--update-golden"):
        expected.write_text(text, encoding="utf-8")
    assert expected.exists(), f"no {expected.name}: run pytest with --update-golden and review it"
    assert text == expected.read_text(encoding="utf-8")
