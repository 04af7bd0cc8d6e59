"""backup.routine's pure parts: steps and record, pings, the metrics text, the schedulers."""

from __future__ import annotations

import http.server
import plistlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from invoke.exceptions import Exit
from prometheus_client.parser import text_string_to_metric_families

from fabfile.core import metrics, pings, routine
from fabfile.core import scheduler as schedulers
from fabfile.core.errors import LockHeldError
from fabfile.core.routine import Run, Step, StepResult

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)


# --- steps and the record ---------------------------------------------------------------


def _fails(code: int):
    def run() -> None:
        raise Exit(code=code)

    return run


def test_steps_run_on_after_a_failure_but_prune_waits_for_the_backup():
    ran: list[str] = []

    def locked() -> None:
        raise LockHeldError("store locked")

    results = routine.run_steps([
        Step("backup", _fails(4)),
        Step("off-site", lambda: ran.append("off-site")),
        Step("prune", lambda: ran.append("prune"), needs=("backup", "off-site")),
        Step("verify", locked),
    ])  # fmt: skip
    assert ran == ["off-site"]
    assert [(r.name, r.exit_code) for r in results] == [
        ("backup", 4), ("off-site", 0), ("prune", None), ("verify", 75),
    ]  # fmt: skip
    assert results[2].note == "skipped: backup failed"
    assert routine.exit_code(results) == 4  # the first failing step's
    assert routine.exit_code(results[1:2]) == 0


def test_record_round_trips_keeps_last_success_and_is_private(tmp_path):
    good = Run("prod", T0, T0 + timedelta(seconds=9), 0, (StepResult("backup", 0, 9.0),))
    steps = (StepResult("backup", 4, 2.0), StepResult("prune", None, 0.0, "skipped"))
    bad = Run("prod", T0 + timedelta(days=7), T0 + timedelta(days=7, seconds=2), 4, steps)
    routine.save(tmp_path, good)
    routine.save(tmp_path, bad)
    routine.save(tmp_path, Run("staging", T0, T0, 0))
    record = routine.load(tmp_path, "prod")
    assert record.last == bad and record.last_success == good
    assert routine.keys(tmp_path) == ["prod", "staging"]
    assert (routine.path(tmp_path).stat().st_mode & 0o777) == 0o600
    assert list(tmp_path.iterdir()) == [routine.path(tmp_path)]  # no temp file left
    assert record.overdue(T0 + timedelta(hours=30), hours=24)
    assert not record.overdue(T0 + timedelta(hours=20), hours=24)
    assert routine.load(tmp_path, "other").overdue(T0, hours=24)  # never ran: overdue


def test_an_unreadable_record_means_overdue_and_is_rewritten(tmp_path):
    routine.path(tmp_path).write_text("{not json")
    record = routine.load(tmp_path, "prod")
    assert record.overdue(T0, hours=1) and "unreadable" in record.problems[0]
    routine.save(tmp_path, Run("prod", T0, T0, 0))
    assert routine.load(tmp_path, "prod").last_success is not None


# --- pings --------------------------------------------------------------------------


class _Monitor(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append((self.command, self.path, self.rfile.read(length)))
        self.send_response(self.answers.pop(0) if self.answers else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def monitor() -> Iterator[str]:
    _Monitor.answers, _Monitor.seen = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Monitor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ping/uuid-secret"
    finally:
        server.shutdown()
        server.server_close()


def test_ping_urls_follow_the_healthchecks_protocol():
    assert pings.url_for("https://hc/x/", "start") == "https://hc/x/start"
    assert pings.url_for("https://hc/x", "success") == "https://hc/x"
    assert pings.url_for("https://hc/x", 4) == "https://hc/x/4"
    with pytest.raises(ValueError):
        pings.url_for("https://hc/x", 0)


def test_ping_sends_no_body_and_retries_a_server_error(monitor):
    _Monitor.answers = [500, 503]
    pauses: list[float] = []
    assert pings.ping(monitor, "start", sleep=pauses.append)
    assert [(m, p) for m, p, _ in _Monitor.seen] == [("GET", "/ping/uuid-secret/start")] * 3
    assert all(body == b"" for _, _, body in _Monitor.seen) and pauses == [1.0, 2.0]


def test_ping_gives_up_on_a_wrong_url_at_once_and_only_warns(monitor, capsys):
    _Monitor.answers = [404]
    assert not pings.ping(monitor, 75, sleep=lambda _: None)
    assert len(_Monitor.seen) == 1
    said = capsys.readouterr().err
    assert "HTTP 404" in said and "uuid-secret" not in said  # the check's key stays private


def test_ping_to_nobody_retries_then_warns_and_off_means_no_request(capsys):
    pauses: list[float] = []
    assert not pings.ping("http://127.0.0.1:1/p", "success", timeout=1, sleep=pauses.append)
    assert len(pauses) == pings.RETRIES and "failed" in capsys.readouterr().err
    assert not pings.ping(None, "start")


# --- metrics ------------------------------------------------------------------------


def test_metrics_text_parses_and_escapes_labels(tmp_path):
    run = Run("prod", T0, T0 + timedelta(seconds=12), 1,
              (StepResult("backup", 0, 10.0), StepResult("verify", 1, 2.0)))  # fmt: skip
    samples = [
        metrics.Sample("last_size_bytes", (("host", 'we"ird\\h'), ("kind", "env")), 1234.0),
        *metrics.routine_samples(routine.Record(run, None)),
    ]
    target = tmp_path / "tf" / "zachot.prom"
    metrics.write(target, metrics.render(samples))
    families = {f.name: f for f in text_string_to_metric_families(target.read_text())}
    [size] = families["zachot_backup_last_size_bytes"].samples
    assert size.labels == {"host": 'we"ird\\h', "kind": "env"} and size.value == 1234
    assert families["zachot_backup_last_size_bytes"].type == "gauge"
    assert [s.value for s in families["zachot_backup_routine_last_exit_code"].samples] == [1]
    assert [s.value for s in families["zachot_backup_routine_last_duration_seconds"].samples] == [
        12
    ]
    steps = {s.labels["step"]: s.value for s in families["zachot_backup_routine_step_success"]
             .samples}  # fmt: skip
    assert steps == {"backup": 1, "verify": 0}
    assert "zachot_backup_routine_last_success_timestamp_seconds" not in families
    assert (target.stat().st_mode & 0o777) == 0o644 and list(target.parent.iterdir()) == [target]


# --- schedulers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "calendar"),
    [
        ("0 2 * * 0", "Sun *-*-* 02:00:00"),
        ("@weekly", "Sun *-*-* 00:00:00"),
        ("30 4 1 * *", "*-*-01 04:30:00"),
        ("*/20 1-2 * * mon-fri", "Mon,Tue,Wed,Thu,Fri *-*-* 01,02:00,20,40:00"),
        ("0 3 * * 7", "Sun *-*-* 03:00:00"),
    ],
)
def test_cron_fields_become_systemd_calendars(cron, calendar):
    assert schedulers.on_calendar(cron) == calendar


@pytest.mark.parametrize("bad", ["0 2 * *", "61 * * * *", "0 2 1 * 0", "x * * * *", "@reboot"])
def test_schedules_systemd_cannot_express_are_refused(bad):
    with pytest.raises(schedulers.ScheduleError):
        schedulers.on_calendar(bad)


def test_systemd_units_are_persistent_with_a_login_catch_up_and_escaped():
    units = schedulers.systemd_units(
        schedule="0 2 * * 0", command="cd '/a b' && X=\"$HOME\" fab >> 'l%.log' 2>&1",
        catchup="fab backup.routine --if-overdue",
    )  # fmt: skip
    assert sorted(units) == sorted([
        "zachot-routine.service", "zachot-routine.timer",
        "zachot-routine-catchup.service", "zachot-routine-catchup.timer",
    ])  # fmt: skip
    timer = units["zachot-routine.timer"]
    assert "OnCalendar=Sun *-*-* 02:00:00\n" in timer and "Persistent=true\n" in timer
    assert "WantedBy=timers.target" in timer
    assert "OnStartupSec=2min\n" in units["zachot-routine-catchup.timer"]
    assert "--if-overdue" in units["zachot-routine-catchup.service"]
    assert (
        "ExecStart=/bin/sh -c \"cd '/a b' && X=\\\"$$HOME\\\" fab >> 'l%%.log' 2>&1\"\n"
        in units["zachot-routine.service"]
    )


def test_launchd_plists_run_on_the_calendar_and_catch_up_at_load():
    plists = schedulers.launchd_plists(
        schedule="0 2 * * 0,3", command="run it", catchup="run it --if-overdue",
        log=Path("/Users/op/zachot.log"),
    )  # fmt: skip
    main = plistlib.loads(plists["org.zachot.routine.plist"])
    assert main["Label"] == "org.zachot.routine"
    assert main["ProgramArguments"] == ["/bin/sh", "-c", "run it"]
    assert main["StartCalendarInterval"] == [
        {"Minute": 0, "Hour": 2, "Weekday": 0}, {"Minute": 0, "Hour": 2, "Weekday": 3},
    ]  # fmt: skip
    assert "RunAtLoad" not in main
    catchup = plistlib.loads(plists["org.zachot.routine-catchup.plist"])
    assert catchup["RunAtLoad"] is True
    assert catchup["ProgramArguments"][-1] == "run it --if-overdue"


def test_scheduler_choice(monkeypatch):
    assert schedulers.choose("cron") == "cron"
    with pytest.raises(schedulers.ScheduleError, match="--scheduler must be"):
        schedulers.choose("anacron")
    monkeypatch.setattr(schedulers.sys, "platform", "darwin")
    assert schedulers.choose(None) == "launchd"
    monkeypatch.setattr(schedulers.sys, "platform", "linux")
    monkeypatch.setattr(schedulers, "systemd_available", lambda: False)
    assert schedulers.choose("auto") == "cron"
