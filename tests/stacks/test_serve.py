"""`distrilab serve`: the JSON the page polls (a fake LXD only here, at the unit level), then the page
as a person sees it: headless Chromium runs its script, and the rendered DOM and a screenshot are
checked. The server answers on 127.0.0.1 only; the page fetches nothing else."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from cdk.model import Lab
from stacks.commands import serve
from stacks.json_output import document
from stacks.loading import load
from tests.ci import skip_unless_ci

REPO = Path(__file__).resolve().parents[2]
DEFAULT_LAB = REPO / "labs" / "default.yaml"
STOPPED = "srv-01-02"
PNG = bytes.fromhex("89504e470d0a1a0a")  # a PNG signature: enough for the server to pass on


def fake_states(lab: Lab) -> dict[str, tuple[str, str]]:
    """Every node Running but STOPPED, as lxd_states answers for a deployed lab."""
    return {lab.instance_name(n.name): ("Stopped" if n.name == STOPPED else "Running", "")
            for n in lab.topology.nodes}


def lxd_down(lab: Lab) -> dict[str, tuple[str, str]]:
    raise ConnectionRefusedError("no LXD socket")


@pytest.fixture(scope="module")
def lab() -> Lab:
    return load(DEFAULT_LAB, check_host_routes=False)  # whatever other lab runs on this host


@pytest.fixture
def view(lab: Lab, tmp_path: Path) -> serve.LabView:
    check = tmp_path / "checks" / f"{lab.name}.json"
    check.parent.mkdir()
    checks = [
        {"name": "rstp", "ok": True, "summary": "converged", "seconds": 1.0, "details": [], "data": {}},
        {"name": "ping", "ok": False, "summary": "29/30 pairs", "seconds": 0.2,
         "details": [f"{STOPPED} unreachable"], "data": {}},
    ]
    check.write_text(json.dumps(document("check", {"lab": lab.name, "ok": False, "checks": checks})))
    return serve.LabView(lab, check, tmp_path / "reports", states=fake_states)


@pytest.fixture
def url(view: serve.LabView) -> Iterator[str]:
    with serve.running(view) as server:
        yield server.url


def fetch(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.headers["Content-Type"], answer.read()


def state(url: str) -> dict[str, Any]:
    content_type, body = fetch(url + "api/state")
    assert content_type == "application/json"
    return json.loads(body)


def test_the_page_and_its_state(url: str, lab: Lab) -> None:
    content_type, page = fetch(url)
    assert content_type.startswith("text/html") and b'src="/serve.js"' in page
    assert b"http" not in page.replace(b"http-equiv", b"")  # nothing from outside this server
    assert fetch(url + "serve.js")[0].startswith("text/javascript")
    doc = state(url)
    assert len(doc["nodes"]) == len(lab.topology.nodes) == 10
    assert [n["node"] for n in doc["nodes"] if n["down"]] == [STOPPED]
    assert {n["state"] for n in doc["nodes"]} == {"Running", "Stopped"}
    assert all(n["management"] for n in doc["nodes"])
    tiers = {n["role"]: n["tier"] for n in doc["nodes"]}
    assert tiers["spine"] < tiers["leaf"] < tiers["server"]
    assert [(c["name"], c["ok"]) for c in doc["check"]["checks"]] == [("rstp", True), ("ping", False)]
    assert doc["charts"] == [] and doc["lxd_error"] is None


def test_lxd_not_answering_shows_unknown(view: serve.LabView) -> None:
    doc = serve.state_document(serve.LabView(view.lab, view.check_file, view.reports_dir, states=lxd_down))
    assert {n["state"] for n in doc["nodes"]} == {"unknown"}
    assert not any(n["down"] for n in doc["nodes"])
    assert "no LXD socket" in doc["lxd_error"]


def test_no_check_yet_and_an_unreadable_one(view: serve.LabView, tmp_path: Path) -> None:
    assert serve.last_check(tmp_path / "none.json") == (None, None)
    view.check_file.write_text("{not json")
    check, error = serve.last_check(view.check_file)
    assert check is None and str(view.check_file) in (error or "")


def test_report_charts_are_served_and_nothing_else(url: str, view: serve.LabView) -> None:
    view.reports_dir.mkdir()
    for name in ("latency.png", "throughput.png", "report.json"):
        (view.reports_dir / name).write_bytes(PNG)
    charts = state(url)["charts"]
    assert [c["name"] for c in charts] == ["latency", "throughput"]
    assert fetch(url + charts[0]["url"].lstrip("/")) == ("image/png", PNG)
    for path in ("report/report.json", "report/../checks/default.json", "api/other", "index.html"):
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(url + path)
        assert err.value.code == 404


# ---- the browser


class Elements(HTMLParser):
    """(tag, attributes) of every element of a document."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [attrs for _, attrs in self.found if name in attrs.get("class", "").split()]


def need_chromium() -> None:
    """Chromium from Debian (cdk/programs.py, group dev): CI must have it; elsewhere the test skips."""
    if shutil.which("chromium") is None:
        skip_unless_ci("chromium is not installed: bash .ci/setup installs it (cdk/programs.py, group dev)")


def test_a_person_sees_the_lab(url: str, lab: Lab, tmp_path: Path) -> None:
    need_chromium()
    page = Elements(serve.rendered_dom(url))
    nodes = page.with_class("node")
    assert len(nodes) == len(lab.topology.nodes)
    assert [n["data-node"] for n in nodes if "down" in n["class"].split()] == [STOPPED]
    assert len(page.with_class("node-row")) == len(lab.topology.nodes)
    assert [c["data-check"] for c in page.with_class("check-row")] == ["rstp", "ping"]
    assert len(page.with_class("link")) == len(lab.topology.links)
    picture = serve.screenshot(url, tmp_path / "serve.png")
    assert picture.read_bytes().startswith(PNG) and picture.stat().st_size > 10_000


def test_the_page_follows_the_lab_as_it_changes(view: serve.LabView, lab: Lab) -> None:
    """As during `up`: the first answer has a node stopped, every later one has it running; the
    page, polling every 2 s, shows the change without a reload (5 s of page time: three polls)."""
    need_chromium()
    answers: list[int] = []

    def coming_up(lab: Lab) -> dict[str, tuple[str, str]]:
        answers.append(1)
        states = fake_states(lab)
        return states if len(answers) == 1 else {name: ("Running", "") for name in states}

    moving = serve.LabView(view.lab, view.check_file, view.reports_dir, states=coming_up)
    with serve.running(moving) as server:
        page = Elements(serve.rendered_dom(server.url))
    assert len(answers) >= 2  # the page asked again
    nodes = page.with_class("node")
    assert len(nodes) == len(lab.topology.nodes) and not [n for n in nodes if "down" in n["class"].split()]
