"""The lost-laptop drill's report: the fetch from off-site is its first step (part of the
RTO), and the JSON and markdown say the backups came from the off-site copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabfile.core.drill.report import step_times
from fabfile.core.offsite_fetch import Fetched, FetchRow
from fabfile.core.plan import Plan, Step, StepResult
from tests.unit.test_drill_report import drill

pytestmark = pytest.mark.unit

ROWS = (
    FetchRow("prod3", "env", "20261124T142652Z", "fetched", True, "1407 bytes"),
    FetchRow("prod3", "units", "20261124T142652Z", "fetched", True, "3047 bytes"),
)
FETCHED = Fetched("vault", "prod3", Path("/store"), ROWS, 1.25)


def test_the_fetch_is_the_first_timed_step():
    plan = Plan("new-box", "restore", (Step("files", "files"), Step("start", "start")))
    done = [StepResult(plan.steps[0], True, "pushed", 2.0)]
    times = step_times(plan, done, FETCHED)
    assert [(t.number, t.name, t.result, t.seconds) for t in times] == [
        (1, "fetch", "ok", 1.25), (2, "files", "ok", 2.0), (3, "start", "not run", 0.0)
    ]  # fmt: skip
    assert times[0].title == "fetch prod3's backups the store lacks from off-site (vault)"


def test_the_report_says_the_backups_came_from_off_site():
    report = drill(steps=step_times(None, [], FETCHED), fetched=FETCHED)
    doc = report.as_json()
    assert doc["fetched"] == {
        "from": "vault",
        "backups": {"env": ["20261124T142652Z"], "units": ["20261124T142652Z"]},
        "seconds": 1.25,
    }
    assert doc["total"]["seconds"] == 1.25  # the fetch counts in the RTO
    assert "1.2 s of it fetching from off-site" in report.rto_line()
    assert (
        "- backups: restored from the off-site copy (vault), the store lacked "
        "env 20261124T142652Z, units 20261124T142652Z"
    ) in report.markdown()


def test_a_drill_from_the_local_store_says_so():
    report = drill()
    assert report.as_json()["fetched"] is None
    assert "- backups: the local store" in report.markdown()
    assert "off-site" not in report.rto_line()


def test_a_dry_run_fetch_is_a_plan_step_with_its_commands():
    planned = Fetched("s3://zachot", "prod3", Path("/store"), ROWS, 0.0, dry_run=True)
    assert planned.note == (
        "would fetch from off-site (s3://zachot): 1 env, 1 units backups of prod3 the store lacked"
    )
    step = planned.step()
    assert step.name == "fetch" and len(step.actions) == 2
    assert step.actions[0].startswith(
        "fetch env 20261124T142652Z (1407 bytes) from s3://zachot into "
        "/store/prod3/env/20261124T142652Z: each file checked"
    )
