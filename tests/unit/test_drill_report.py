"""drill without a fleet: where it refuses to run, the report's values and renderings,
and its history in the store (modes, newest, masking), plus backup.verify's line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabfile.backup.verify import show_drills
from fabfile.core import secrets
from fabfile.core.checklist.model import FAIL, NA, OK, Fix, Row
from fabfile.core.checklist.report import Report
from fabfile.core.drill import guard, history
from fabfile.core.drill.report import BackupAge, Drill, StepTime, step_times, target_seconds
from fabfile.core.errors import ExitCode, ZachotError
from fabfile.core.model import Host
from fabfile.core.plan import SKIPPED, Plan, Step, StepResult
from fabfile.core.store import Store

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).parent / "fab"
STARTED = datetime(2026, 11, 24, 16, 26, 52, tzinfo=UTC)
PROD = Host(name="prod3", address="10.231.5.2", port=22)
SCRATCH = Host(name="new-box", address="10.231.2.2", port=22, scratch=True)


# -- refusal ------------------------------------------------------------------------


def test_a_scratch_host_other_than_the_source_is_allowed():
    assert guard.refusal(SCRATCH, PROD, ["new-box"]) is None


def test_a_host_not_marked_scratch_is_refused_with_a_scratch_host_to_use():
    other = Host(name="prod2", address="10.231.4.2", port=22)
    why = guard.refusal(other, PROD, ["new-box"])
    assert why is not None and "\n" not in why
    assert why.startswith("prod2 is not a scratch host")
    assert "nothing was done" in why
    assert why.endswith("fab -H new-box drill --source prod3")


def test_the_source_itself_is_refused_even_when_marked_scratch():
    source = Host(name="new-box", address="10.231.2.2", scratch=True)
    why = guard.refusal(source, source, ["new-box"])
    assert why is not None and why.startswith("new-box is the drill's source new-box")
    assert "mark a spare box scratch: true" in why  # the only scratch host is the source


def test_another_name_for_the_source_machine_is_refused():
    alias = Host(name="alias", address=PROD.address, port=PROD.port, scratch=True)
    assert "is the drill's source prod3" in (guard.refusal(alias, PROD, ["alias"]) or "")
    elsewhere = Host(name="alias", address=PROD.address, port=2222, scratch=True)
    assert guard.refusal(elsewhere, PROD, ["alias"]) is None


def test_check_raises_a_usage_error():
    with pytest.raises(guard.DrillRefused) as caught:
        guard.check(PROD, PROD, ["new-box"])
    assert caught.value.exit_code == ExitCode.USAGE


def fab(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZACHOT_INVENTORY": str(inventory), "NO_COLOR": "1"}
    return subprocess.run(
        [str(FAB), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def inventory(tmp_path) -> Path:
    """Hosts on a closed loopback port: a drill that connected would fail with exit 4, not 2."""
    path = tmp_path / "inventory.yml"
    path.write_text(
        "all:\n"
        "  vars:\n"
        f"    store: {{path: {tmp_path / 'store'}}}\n"
        "    address: 127.0.0.1\n"
        "  hosts:\n"
        "    prod: {port: 1}\n"
        "    prod2: {port: 2}\n"
        "    new-box: {port: 3, scratch: true}\n"
    )
    return path


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("-H", "prod", "drill", "--source", "prod", "--yes"), "prod is the drill's source prod"),
        (("-H", "prod2", "drill", "--source", "prod", "--yes"), "prod2 is not a scratch host"),
        (("-H", "new-box", "drill", "--source", "new-box"), "new-box is the drill's source"),
        (("-H", "new-box", "drill"), "--source <host>"),
        (("-H", "new-box,prod", "drill", "--source", "prod"), "one host at a time"),
        (("-H", "new-box", "drill", "--source", "nosuch"), "unknown host or group 'nosuch'"),
    ],
)
def test_cli_refuses_before_connecting_with_one_line_and_exit_2(inventory, tmp_path, args, said):
    done = fab(inventory, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and said in line
    assert done.stdout == ""  # no plan: nothing was read from any host
    assert not (tmp_path / "store").exists()


def test_cli_refusal_comes_before_a_bad_wheel_option(inventory):
    done = fab(inventory, "-H", "prod2", "drill", "--source", "prod", "--wheelhouse", "/nope")
    assert done.returncode == 2 and "not a scratch host" in done.stderr


# -- the report -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30-60 min", 3600.0), ("2-5 min", 300.0), ("90 s", 90.0), ("1 h", 3600.0), ("soon", None)],
)
def test_target_seconds_is_the_upper_bound(text, seconds):
    assert target_seconds(text) == seconds


def steps(*spec: tuple[str, float]) -> tuple[StepTime, ...]:
    return tuple(
        StepTime(n, f"s{n}", f"step {n}", result, seconds, f"detail {n}")
        for n, (result, seconds) in enumerate(spec, 1)
    )


def backups() -> tuple[BackupAge, ...]:
    two_hours = STARTED - timedelta(hours=2)
    return (
        BackupAge("env", "20261124T142652Z", two_hours, True, 7.0),
        BackupAge("units", "20261124T142652Z", two_hours, True, 7.0),
        BackupAge("logs", "20261110T100000Z", STARTED - timedelta(days=14), False, 7.0),
        BackupAge("redis", None, None, False, 7.0),
    )


def checklist(*rows: Row) -> Report:
    base = [
        Row("services", "services running", OK, "running: all"),
        Row("code", "code in /opt/zachot/repo", NA, "no record"),
    ]
    return Report("new-box", [*base, *rows], 0.4)


def drill(**changes) -> Drill:
    values = dict(
        id="20261124T162652Z",
        source="prod3",
        target="new-box",
        started=STARTED,
        finished=STARTED + timedelta(seconds=14.5),
        steps=steps(("skipped", 0.1), ("ok", 5.0), ("ok", 6.2)),
        rto_target="30-60 min",
        backups=backups(),
        checklist=checklist(),
        code="299f172edb05, deployed (v1.2.0)",
        pip="wheels",
    )
    return Drill(**{**values, **changes})


def test_a_passing_drill_as_json():
    doc = drill().as_json()
    assert doc["pass"] is True and doc["failures"] == []
    assert [(s["number"], s["result"], s["seconds"]) for s in doc["steps"]] == [
        (1, "skipped", 0.1), (2, "ok", 5.0), (3, "ok", 6.2)
    ]  # fmt: skip
    assert doc["total"] == {
        "seconds": 11.3,
        "target": "30-60 min",
        "target_seconds": 3600.0,
        "within_target": True,
        "skipped_steps": ["step 1"],
    }
    assert doc["wall_seconds"] == 14.5
    ages = {b["kind"]: (b["id"], b["age_seconds"], b["within_max_age"]) for b in doc["backups"]}
    assert ages == {
        "env": ("20261124T142652Z", 7200, True),
        "units": ("20261124T142652Z", 7200, True),
        "logs": ("20261110T100000Z", 14 * 86400, False),
        "redis": (None, None, None),
    }
    assert doc["checklist"]["ok"] is True and doc["started"] == "2026-11-24T16:26:52Z"
    json.dumps(doc)  # plain JSON all the way down


def test_a_passing_drill_as_markdown():
    text = drill().markdown()
    assert text.startswith("# Drill 20261124T162652Z: prod3 restored onto new-box — PASS\n")
    assert "| 2 | step 2 | ok | 5.0 | detail 2 |" in text
    assert "|  | **total (RTO)** |  | 11.3 | runbook: 30-60 min |" in text
    assert "| env | 20261124T142652Z | 2h | ≤ 7d | yes |" in text
    assert "| logs | 20261110T100000Z | 14d | OLDER than 7d | no |" in text
    assert "| redis | none | - | - | no |" in text
    assert "| ✓ | services | services running | running: all |  |" in text
    assert "1 of 3 steps found their work already done on new-box" in text
    assert "failed:" not in text


def test_a_failed_step_fails_the_drill_and_lists_the_steps_not_run():
    plan = Plan("new-box", "restore", tuple(Step(f"s{n}", f"step {n}") for n in (1, 2, 3)))
    results = [
        StepResult(plan.steps[0], True, SKIPPED, 0.1),
        StepResult(plan.steps[1], False, "pip install failed", 4.0),
    ]
    timed = step_times(plan, results)
    assert [(s.result, s.seconds) for s in timed] == [
        ("skipped", 0.1), ("failed", 4.0), ("not run", 0.0)
    ]  # fmt: skip
    failed = drill(steps=timed, restore_error="new-box: step 2 'step 2' failed: pip")
    assert not failed.passed and failed.verdict == "FAIL"
    assert failed.as_json()["failures"] == ["restore: new-box: step 2 'step 2' failed: pip"]
    assert failed.as_json()["total"]["within_target"] is None
    assert failed.rto_line() == "none, the restore failed after 2 steps (4.1 s)"
    text = failed.markdown()
    assert "— FAIL" in text and "| 3 | step 3 | not run | 0.0 |  |" in text
    assert "- failed: restore: new-box: step 2 'step 2' failed: pip" in text


def test_a_failing_checklist_item_fails_the_drill():
    bad = Row("files", "env file", FAIL, "mode 0644", Fix("fab -H new-box restore.env"))
    failed = drill(checklist=checklist(bad))
    assert failed.as_json()["pass"] is False
    [reason] = failed.failures
    assert reason.startswith("checklist: new-box:") and reason.endswith("env file")
    assert "| ✗ | files | env file | mode 0644 | fab -H new-box restore.env |" in failed.markdown()


def test_a_checklist_that_could_not_run_fails_the_drill():
    failed = drill(checklist=None, checklist_error="new-box: connection reset")
    assert failed.failures == ["checklist: new-box: connection reset"]
    assert "Not run: new-box: connection reset" in failed.markdown()


def test_a_restore_that_could_not_be_planned_is_one_failure():
    failed = drill(steps=(), checklist=None, restore_error="cannot plan the restore: no env")
    assert failed.failures == ["restore: cannot plan the restore: no env"]
    assert failed.as_json()["total"]["seconds"] == 0 and not failed.passed


def test_a_drill_over_the_runbook_target_says_so():
    slow = drill(steps=steps(("ok", 3000.0), ("ok", 700.0)))
    assert slow.as_json()["total"]["within_target"] is False
    assert "OVER the target" in slow.rto_line() and slow.passed  # RTO is reported, not judged


def test_markdown_cells_stay_in_their_column():
    odd = drill(steps=(StepTime(1, "x", "a | b", "ok", 1.0, "line\nbreak"),))
    assert "| 1 | a \\| b | ok | 1.0 | line break |" in odd.markdown()


# -- history in the store ---------------------------------------------------------------


def test_save_writes_private_files_the_store_tolerates(tmp_path):
    store = Store(tmp_path / "store")
    md, js = history.save(store, drill())
    assert (md.name, js.name) == ("20261124T162652Z.md", "20261124T162652Z.json")
    assert md.parent == tmp_path / "store" / "prod3" / "drills"
    for path in (md, js):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (md.parent, md.parent.parent, store.root):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert json.loads(js.read_text())["pass"] is True
    assert store.problems() == []
    (store.root / "prod3" / "stray").mkdir()  # only the drills directory is tolerated
    [problem] = store.problems()
    assert problem.startswith(f"{store.root / 'prod3' / 'stray'}: stray entry")


def test_last_is_the_newest_readable_drill(tmp_path):
    store = Store(tmp_path)
    assert history.last(store, "prod3") is None
    history.save(store, drill(id="20261124T162652Z"))
    failed = drill(id="20261125T090000Z", finished=STARTED + timedelta(days=1), checklist=None)
    history.save(store, failed)
    last = history.last(store, "prod3")
    assert last is not None and (last.id, last.passed, last.target) == (
        "20261125T090000Z", False, "new-box"
    )  # fmt: skip
    assert last.as_json()["date"] == "2026-11-25T16:26:52Z"
    (store.drills_dir("prod3") / "20261126T000000Z.json").write_text("{not json")
    assert history.last(store, "prod3").id == "20261125T090000Z"


def test_free_id_never_overwrites_an_earlier_report(tmp_path):
    store = Store(tmp_path)
    assert history.free_id(store, "prod3", "20261124T162652Z") == "20261124T162652Z"
    history.save(store, drill())
    assert history.free_id(store, "prod3", "20261124T162652Z") == "20261124T162652Z-1"


def test_no_secret_value_reaches_the_report_files(tmp_path):
    canary = "canary-Zq81-secret-value"
    secrets.register([canary])
    leaky = Row("logs", "errors", FAIL, f"Traceback: bad key {canary}")
    md, js = history.save(Store(tmp_path), drill(checklist=checklist(leaky), code=canary))
    for path in (md, js):
        text = path.read_text()
        assert canary not in text and secrets.MASK in text


def test_verify_shows_the_last_drill_per_host(tmp_path, capsys):
    store = Store(tmp_path)
    history.save(store, drill())
    show_drills([("prod3", history.last(store, "prod3")), ("prod4", None)])
    said = capsys.readouterr().out.splitlines()
    assert said == [
        "prod3: last drill: 2026-11-24 16:27 UTC (pass) onto new-box",
        "prod4: last drill: never (fab -H <scratch host> drill --source prod4)",
    ]


def test_a_drill_failure_is_exit_1():
    from fabfile.core.drill import DrillFailed

    assert issubclass(DrillFailed, ZachotError) and DrillFailed("x").exit_code == ExitCode.FAILED
