"""The checklist's parsers and judgement against output recorded on the sandbox's prod4.

HEALTHY and BROKEN are the gathering script's real stdout (remote.argv run with
sudo): a fresh box, and the same box with the worker stopped, the env file
chmod 644 and Redis stopped. The rest is edited from them where noted.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabfile.core.checklist import guided, logscan, remote
from fabfile.core.checklist import status as fleet
from fabfile.core.checklist.evaluate import evaluate, failed
from fabfile.core.checklist.gather import assemble
from fabfile.core.checklist.model import FAIL, GROUPS, NA, OK, BackupInfo, Fix, RedisFacts, Row
from fabfile.core.checklist.report import ChecklistFailed, Report
from fabfile.core.errors import ExitCode
from fabfile.core.model import Host

pytestmark = pytest.mark.unit

HOST = Host(name="prod4")
COMMIT = "299f172edb05843f0ed34d1e1429091715f7a932"
OTHER = "1111111111111111111111111111111111111111"
NOW = datetime(2026, 11, 24, 16, 5, tzinfo=UTC)
COUNTS = {"queued": 0, "delayed": 0, "in_flight": 0, "dead": 0}
PONG = RedisFacts(True, "PONG, redis 7.0.15", 1, {"default": COUNTS})
REFUSED = RedisFacts(
    False,
    "Redis on prod4 (127.0.0.1:6379 via SSH) does not answer PING: connection refused on the "
    "server; is redis-server.service running?",
)
RESTART_ALL = (
    "ssh prod4 'sudo systemctl stop zachot-api.service zachot-worker.service "
    "redis-server.service && sudo systemctl start redis-server.service && sudo systemctl start "
    "zachot-worker.service && sudo systemctl start zachot-api.service'"
)
ENV_PERMS = (
    "ssh prod4 'sudo chown zachot:zachot /opt/zachot/envs/prod/etc/zachot.env && "
    "sudo chmod 0600 /opt/zachot/envs/prod/etc/zachot.env'"
)


def _units(redis: tuple, worker: tuple, api: tuple) -> str:
    """systemctl show blocks as recorded; each tuple: ActiveState, SubState, monotonic µs."""
    blocks = []
    for (name, fragment, after), (active, sub, mono) in zip(
        [
            ("redis-server.service", "/lib/systemd/system/redis-server.service",
             "tmp.mount systemd-journald.socket sysinit.target basic.target network.target"),
            ("zachot-worker.service", "/etc/systemd/system/zachot-worker.service",
             "sysinit.target network.target system.slice basic.target redis-server.service"),
            ("zachot-api.service", "/etc/systemd/system/zachot-api.service",
             "basic.target network.target redis-server.service sysinit.target system.slice"),
        ],
        [redis, worker, api],
        strict=True,
    ):  # fmt: skip
        blocks.append(
            f"Result=success\nNRestarts=0\nId={name}\nAfter={after}\nLoadState=loaded\n"
            f"ActiveState={active}\nSubState={sub}\nFragmentPath={fragment}\n"
            f"UnitFileState=enabled\nActiveEnterTimestamp=Tue 2026-11-24 15:50:17 UTC\n"
            f"ActiveEnterTimestampMonotonic={mono}\nNeedDaemonReload=no"
        )
    return "\n\n".join(blocks)


def _script(units: str, *, env_mode: str = "600", health: str = "200", venv: str = "") -> str:
    return f"""@@zachot:units@@
{units}
@@zachot:env@@
stat {env_mode} zachot zachot 280 regular file
key REDIS_URL
key WORKER_CONCURRENCY
key API_HOST
key API_PORT
key API_SECRET_KEY
key SENTRY_DSN
@@zachot:code@@
{COMMIT}
v1.2.0
0
@@zachot:history@@
@absent
@@zachot:python@@
Python 3.11.2
@@zachot:venv@@
{venv or "Python 3.11.2"}
@@zachot:health@@
{health}
@@zachot:logs@@
{{"files": [{{"name": "api.log", "errors": 0, "untimed": 0, "last": [], "truncated": false, \
"since": "2026-11-24 15:50:17"}}, {{"name": "worker.err", "errors": 0, "untimed": 0, "last": [], \
"truncated": false, "since": "2026-11-24 15:50:17"}}]}}
"""


RUNNING = ("active", "running")
HEALTHY = _script(_units((*RUNNING, 3930744502), (*RUNNING, 3930780516), (*RUNNING, 3930769441)))
BROKEN = _script(
    _units(("inactive", "dead", 4650163276), ("inactive", "dead", 4650178176),
           (*RUNNING, 4650176592)),
    env_mode="644",
    health="503",
)  # fmt: skip


def backup(kind: str = "env", commit: str = COMMIT, age: timedelta = timedelta(hours=1)):
    deployed = {"commit": commit, "describe": "v1.2.0"}
    return BackupInfo(kind, "20261124T150500Z", NOW - age, deployed)


def facts(stdout: str = HEALTHY, redis: RedisFacts = PONG, backups=None):
    newest = {"env": backup("env"), "units": backup("units")} if backups is None else backups
    return assemble(remote.split(stdout), redis, newest, NOW)


def by_item(rows: list[Row]) -> dict[str, Row]:
    return {r.item: r for r in rows}


# -- the recorded healthy box --------------------------------------------------------


def test_a_healthy_box_is_all_ok_in_the_runbooks_order():
    rows = evaluate(HOST, facts())
    assert [r.state for r in rows] == [OK] * len(rows), [r for r in rows if r.state != OK]
    order = [GROUPS.index(r.group) for r in rows]
    assert order == sorted(order) and set(r.group for r in rows) == set(GROUPS)
    items = by_item(rows)
    assert items["env file /opt/zachot/envs/prod/etc/zachot.env"].evidence.startswith(
        "0600 zachot:zachot, 6 keys"
    )
    assert "recorded v1.2.0 (299f172edb05)" in items["code in /opt/zachot/repo"].evidence
    assert items["zachot-worker.service"].evidence.endswith("1 live worker(s)")
    assert not any(r.fix for r in rows)


def test_the_recorded_sections_parse():
    parts = remote.split(HEALTHY)
    assert list(parts) == list(remote.CHECKLIST)
    units = remote.parse_units(parts["units"])
    assert units["zachot-api.service"].entered_mono == 3930769441
    assert "redis-server.service" in units["zachot-worker.service"].after
    env = remote.parse_env(parts["env"])
    assert (env.mode, env.owner, env.kind) == ("600", "zachot", "regular file")
    assert env.keys[0] == "REDIS_URL" and len(env.keys) == 6
    code = remote.parse_code(parts["code"], parts["history"])
    assert (code.commit, code.describe, code.dirty, code.history) == (COMMIT, "v1.2.0", 0, None)


# -- the recorded broken box -------------------------------------------------------


def test_worker_stopped_env_mode_broken_and_redis_down_each_fail_with_their_fix():
    rows = evaluate(HOST, facts(BROKEN, REFUSED))
    items = by_item(rows)
    env = items["env file /opt/zachot/envs/prod/etc/zachot.env"]
    assert env.state == FAIL and env.evidence == "0644 zachot:zachot, expected 0600 zachot:zachot"
    assert env.fix == Fix(ENV_PERMS, "env-perms")
    redis = items["Redis PING (127.0.0.1:6379)"]
    assert redis.state == FAIL and "connection refused" in redis.evidence
    assert redis.fix == Fix(RESTART_ALL, "start:redis")
    worker = items["zachot-worker.service"]
    assert worker.state == FAIL and worker.evidence.startswith("inactive (dead)")
    assert worker.fix == Fix(RESTART_ALL, "start:redis")  # Redis first, then the worker
    services = items["services running"]
    assert services.state == FAIL
    assert "stopped: redis-server.service (inactive (dead)), zachot-worker.service" in (
        services.evidence
    )
    scale = items["scale of the problem"]
    assert scale.state == FAIL and scale.evidence.startswith("down: Redis (")
    assert "worker (zachot-worker.service is inactive (dead))" in scale.evidence
    assert "API (zachot-api.service is active but its health URL says 503)" in scale.evidence
    assert scale.fix == env.fix  # the first fix in the runbook's order
    assert items["http://127.0.0.1:8000/health"].state == FAIL
    assert items["python3"].state == OK and items["venv"].state == OK


def test_only_the_worker_stopped_restarts_from_the_worker():
    stdout = _script(_units((*RUNNING, 1), ("inactive", "dead", 3), (*RUNNING, 2)))
    row = by_item(evaluate(HOST, facts(stdout)))["zachot-worker.service"]
    assert row.fix is not None and row.fix.action == "start:worker"
    assert row.fix.command == (
        "ssh prod4 'sudo systemctl stop zachot-api.service zachot-worker.service && "
        "sudo systemctl start zachot-worker.service && sudo systemctl start zachot-api.service'"
    )


def test_a_crash_looping_redis_and_a_lost_unit_file():
    # Recorded after a corrupt dump.rdb and `rm zachot-api.service; daemon-reload`.
    units = _units(("failed", "failed", 4667531029), ("inactive", "dead", 1), (*RUNNING, 2))
    units = units.replace("NRestarts=0\nId=redis", "NRestarts=4\nId=redis")
    api = units.index("Id=zachot-api.service")
    units = units[:api] + units[api:].replace("LoadState=loaded", "LoadState=not-found").replace(
        "FragmentPath=/etc/systemd/system/zachot-api.service", "FragmentPath="
    )
    venv = "sh: 1: /opt/zachot/envs/prod/bin/python: not found\nfailed: exit 127"
    items = by_item(evaluate(HOST, facts(_script(units, health="503", venv=venv), REFUSED)))
    assert items["Redis PING (127.0.0.1:6379)"].fix == Fix("fab -H prod4 restore.redis",
                                                          "restore.redis")  # fmt: skip
    assert "restarted 4 time(s) by systemd" in items["redis-server.service"].evidence
    unit_files = items["unit files zachot-worker.service, zachot-api.service"]
    assert unit_files.state == FAIL and unit_files.evidence == "zachot-api.service not-found"
    assert unit_files.fix == Fix("fab -H prod4 restore.units", "restore.units")
    venv_row = items["venv"]
    assert venv_row.state == FAIL and "not found; failed: exit 127" in venv_row.evidence
    assert venv_row.fix == Fix("fab -H prod4 restore.server")  # by hand: a rebuild


@pytest.mark.parametrize(
    ("env_section", "evidence"),
    [
        ("missing", "missing"),
        ("stat 777 root root 12 symbolic link", "is a symbolic link"),
        (
            "stat 600 zachot zachot 20 regular file\nkey REDIS_URL",
            "1 keys; lacks WORKER_CONCURRENCY",
        ),
    ],
)
def test_a_missing_or_damaged_env_file_is_restore_env(env_section, evidence):
    stdout = HEALTHY.replace(HEALTHY[HEALTHY.index("stat 600") : HEALTHY.index("@@zachot:code")],
                             env_section + "\n")  # fmt: skip
    row = by_item(evaluate(HOST, facts(stdout)))["env file /opt/zachot/envs/prod/etc/zachot.env"]
    assert (row.state, row.evidence) == (FAIL, evidence)
    assert row.fix == Fix("fab -H prod4 restore.env", "restore.env")


# -- start order ------------------------------------------------------------------------


def order_row(redis_us: int, worker_us: int, api_us: int, edit=("", "")) -> Row:
    stdout = _script(_units((*RUNNING, redis_us), (*RUNNING, worker_us), (*RUNNING, api_us)))
    stdout = stdout.replace(*edit) if edit[0] else stdout
    return by_item(evaluate(HOST, facts(stdout)))["redis-server → zachot-worker → zachot-api"]


def test_worker_and_api_started_together_at_boot_are_in_order():
    row = order_row(1_000_000, 1_040_000, 1_020_000)  # recorded: the API 11 ms first
    assert row.state == OK and "zachot-worker.service +0.04 s" in row.evidence


def test_an_api_started_well_before_the_worker_is_out_of_order():
    row = order_row(1_000_000, 9_000_000, 2_000_000)
    assert row.state == FAIL
    assert row.evidence == "zachot-api.service started 7.0 s before zachot-worker.service"
    assert row.fix is not None and row.fix.action == "start:api"


def test_a_redis_restarted_under_running_services_needs_them_restarted():
    row = order_row(5_000_000, 2_000_000, 3_000_000)
    assert row.state == FAIL and row.fix is not None and row.fix.action == "start:worker"


def test_units_that_do_not_order_themselves_after_redis_need_restore_units():
    row = order_row(1, 2, 3, ("basic.target network.target redis-server.service", "x"))
    assert row.state == FAIL
    assert row.evidence == "zachot-api.service lacks After=redis-server.service"
    assert row.fix == Fix("fab -H prod4 restore.units", "restore.units")


# -- code ---------------------------------------------------------------------------------


def history_line(commit: str, result: str = "ok", action: str = "release", **extra) -> str:
    entry = {"time": "2026-11-24T12:00:00Z", "action": action, "ref": "v1.2.0", "commit": commit,
             "previous": None, "operator": "ops@laptop", "result": result, **extra}  # fmt: skip
    return json.dumps(entry)


def code_row(history: str | None, backups=None) -> Row:
    stdout = HEALTHY if history is None else HEALTHY.replace("@absent", history)
    return by_item(evaluate(HOST, facts(stdout, backups=backups)))["code in /opt/zachot/repo"]


def test_code_matching_the_last_recorded_deploy_is_ok():
    row = code_row(history_line(OTHER) + "\n" + history_line(COMMIT))
    assert row.state == OK and "last recorded deploy: 2026-11-24T12:00:00Z release" in row.evidence


def test_code_that_is_not_the_last_recorded_deploy_offers_a_rollback_to_it():
    row = code_row(history_line(OTHER))
    assert row.state == FAIL
    short = OTHER[:12]
    assert row.fix == Fix(f"fab -H prod4 deploy.rollback --to {short}", f"deploy.rollback:{short}")


def test_a_failed_deploy_still_checked_out_offers_the_rollback():
    row = code_row(history_line(OTHER) + "\n" + history_line(COMMIT, "failed", step="start"))
    assert row.state == FAIL and "the last deploy failed" in row.evidence
    assert row.fix == Fix("fab -H prod4 deploy.rollback", "deploy.rollback:")


def test_without_history_the_newest_backup_is_the_record():
    assert code_row(None).state == OK
    differs = code_row(None, backups={"env": backup(commit=OTHER)})
    assert differs.state == NA and "recorded v1.2.0 (111111111111)" in differs.evidence
    assert code_row(None, backups={}).state == NA


def test_no_checkout_is_a_failure():
    stdout = HEALTHY.replace(f"{COMMIT}\nv1.2.0\n0", "-\n-\n0")
    row = by_item(evaluate(HOST, facts(stdout)))["code in /opt/zachot/repo"]
    assert (row.state, row.evidence) == (FAIL, "no git checkout")


# -- backups, logs, whole reports -----------------------------------------------------


def test_backups_row_states():
    row = lambda b: by_item(evaluate(HOST, facts(backups=b)))["backups to restore from"]  # noqa: E731
    assert row({}).state == NA
    stale = row({"env": backup(age=timedelta(days=9)), "units": backup("units")})
    assert stale.state == FAIL and "env older than 7 days" in stale.evidence
    assert stale.fix == Fix("fab -H prod4 backup.all")
    assert row({"env": backup()}).evidence.endswith("no units backup")


def test_error_lines_are_a_row_per_file_with_the_last_lines():
    scan = {"files": [{"name": "worker.err", "errors": 2, "untimed": 0, "truncated": False,
                       "since": "2026-11-24 16:01:28",
                       "last": ["[2026-11-24 16:02:10,123] [ERROR] boom with ******** inside",
                                "Traceback (most recent call last):"]}]}  # fmt: skip
    stdout = HEALTHY[: HEALTHY.index("@@zachot:logs@@")] + "@@zachot:logs@@\n" + json.dumps(scan)
    rows = [r for r in evaluate(HOST, facts(stdout)) if r.group == "logs"]
    assert [(r.item, r.state) for r in rows] == [("errors in worker.err", FAIL)]
    assert rows[0].evidence.startswith("2 error line(s) (since 2026-11-24 16:01:28); last: [")
    assert rows[0].fix == Fix("ssh prod4 'sudo tail -n 50 /opt/zachot/logs/worker.err'")


def test_logs_that_cannot_be_scanned_are_not_applicable():
    assert remote.parse_logs("sh: 1: python3: not found").error == (
        "could not scan the logs: python3 is missing"
    )
    stdout = HEALTHY[: HEALTHY.index("@@zachot:logs@@")] + "@@zachot:logs@@\nsh: python3: not found"
    row = next(r for r in evaluate(HOST, facts(stdout)) if r.group == "logs")
    assert row.state == NA


def test_report_json_and_verdict():
    report = Report("prod4", evaluate(HOST, facts(BROKEN, REFUSED)), 0.4)
    doc = report.as_json()
    assert doc["ok"] is False and doc["host"] == "prod4"
    assert {i["state"] for i in doc["items"]} == {"ok", "failed"}
    env = next(i for i in doc["items"] if i["item"].startswith("env file"))
    assert env["fix"] == ENV_PERMS
    with pytest.raises(ChecklistFailed) as caught:
        report.verdict()
    assert "env file /opt/zachot/envs/prod/etc/zachot.env" in caught.value.message
    assert Report("prod4", evaluate(HOST, facts()), 0.4).verdict() == "16 ✓, 0 ✗, 0 –"


# -- the script ---------------------------------------------------------------------------


def test_values_reach_the_script_as_argv_items_and_the_script_is_a_constant_on_stdin():
    host = replace(HOST, layout=replace(HOST.layout, env_file="/x/$(rm -rf /)'.env"))
    argv, script = remote.command(host, remote.STATUS)
    assert argv[0] == "env" and argv[-2:] == ["sh", "-s"]
    assert "ZC_ENV=/x/$(rm -rf /)'.env" in argv
    assert b"rm -rf" not in script and script == remote.command(HOST, remote.STATUS)[1]
    assert re.findall(rb"@@zachot:([a-z]+)@@", script) == [b"units", b"code", b"health"]
    assert sum(len(a) for a in argv) < 1000  # what sudo logs per run stays one short line


def test_the_script_runs_in_a_posix_shell(tmp_path):
    # Every section, run by dash/sh here against a layout that does not exist.
    layout = replace(HOST.layout, root=str(tmp_path), env_file=str(tmp_path / "etc/zachot.env"),
                     repo_dir=str(tmp_path / "repo"), venv_dir=str(tmp_path / "venv"),
                     logs_dir=str(tmp_path))  # fmt: skip
    (tmp_path / "api.err").write_text("ERROR no stamp\n")
    argv, script = remote.command(replace(HOST, layout=layout))
    env = {**os.environ, **dict(a.split("=", 1) for a in argv[1:-2])}
    said = subprocess.run(["sh", "-s"], input=script, capture_output=True, env=env, timeout=60)
    parts = remote.split(said.stdout.decode())
    assert list(parts) == list(remote.CHECKLIST), said.stderr
    assert remote.parse_env(parts["env"]).present is False
    assert remote.parse_history(parts["history"]) is None
    assert remote.parse_code(parts["code"], parts["history"]).commit is None
    assert remote.parse_python(parts["python"], parts["venv"]).venv is None
    assert [(f.name, f.errors) for f in remote.parse_logs(parts["logs"]).files] == [("api.err", 1)]


def test_split_ignores_what_comes_before_the_first_mark_and_keeps_missing_sections_out():
    assert remote.split("noise\n@@zachot:units@@\nA=1\n@@zachot:env@@\nmissing\n") == {
        "units": "A=1",
        "env": "missing",
    }


# -- the log scanner (shipped to the server as source) ---------------------------------


def test_lines_count_from_the_start_and_tracebacks_take_the_stamp_above_them():
    since = time.mktime(time.strptime("2026-11-24 16:00:00", "%Y-%m-%d %H:%M:%S"))
    lines = [
        "[2026-11-24 15:59:58,100] [ERROR] before the start",
        "Traceback (most recent call last):",  # belongs to 15:59:58: not counted
        "[2026-11-24 16:00:00] INFO second-resolution stamp of the start's own second",
        "2026-11-24 16:00:00 ERROR in the start's second",
        "[2026-11-24 16:00:05,000] [CRITICAL] after",
        "Traceback (most recent call last):",
    ]
    count, last, untimed = logscan.scan_lines(lines, since)
    assert (count, untimed) == (3, 0)
    assert last == lines[3:4] + lines[4:6]


def test_untimed_error_lines_count_as_untimed():
    assert logscan.scan_lines(["ERROR no stamp", "fine", "Traceback (most recent call last):"],
                              10**10) == (2, ["ERROR no stamp",
                                              "Traceback (most recent call last):"], 2)  # fmt: skip


def test_stamps_with_a_zone_are_read_in_that_zone():
    utc = logscan.stamp("2026-11-24T16:00:00.5Z ERROR x")
    moscow = logscan.stamp("2026-11-24 19:00:00.5+03:00 ERROR x")
    assert utc == moscow == datetime(2026, 11, 24, 16, 0, 0, 500000, tzinfo=UTC).timestamp()
    assert logscan.stamp("no stamp") is None


def test_secrets_are_masked_on_the_server(tmp_path):
    env = tmp_path / "zachot.env"
    env.write_text("API_SECRET_KEY='s3cr3t-value'\nexport SENTRY_DSN=https://k@x/1\nPORT=8000\n")
    found = logscan.secrets_of(str(env))
    assert found == ["https://k@x/1", "s3cr3t-value"]
    assert logscan.mask("token s3cr3t-value at 8000", found) == "token ******** at 8000"


def test_the_shipped_source_runs_standalone(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "worker.err").write_text("[2026-11-24 16:00:00,1] [ERROR] key s3cr3t-value\n")
    (logs / "worker.err.2.gz").write_bytes(b"old rotation: never read")
    (tmp_path / "zachot.env").write_text("API_SECRET_KEY=s3cr3t-value\n")
    unit = tmp_path / "zachot-worker.service"
    unit.write_text(f"[Service]\nStandardError=append:{logs}/worker.err\n")
    assert logscan.targets(str(unit)) == [str(logs / "worker.err")]
    # No systemctl on PATH here: the unit's start is unknown, so every error line counts.
    argv = [sys.executable, "-c", remote.LOGSCAN, str(tmp_path / "zachot.env"), str(logs), "x"]
    env = {**os.environ, "PATH": str(tmp_path)}
    said = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    scan = remote.parse_logs(said.stdout)
    assert [(f.name, f.errors) for f in scan.files] == [("worker.err", 1)]
    assert scan.files[0].last == ("[2026-11-24 16:00:00,1] [ERROR] key ********",)


# -- guided: which fixes are offered, in which order ------------------------------------


def test_guided_offers_fixes_in_runbook_order_and_reads_the_host_again(monkeypatch):
    broken = Report("prod4", evaluate(HOST, facts(BROKEN, REFUSED)), 0.1)
    perms_fixed = BROKEN.replace("stat 644", "stat 600")
    after_perms = Report("prod4", evaluate(HOST, facts(perms_fixed, REFUSED)), 0.1)
    healthy = Report("prod4", evaluate(HOST, facts()), 0.1)
    reads = iter([broken, after_perms, healthy, healthy])
    applied: list[str] = []
    monkeypatch.setattr(guided, "apply", lambda ctx, fix, yes: applied.append(fix.action) or True)
    monkeypatch.setattr(Report, "show", lambda self: None)
    final = guided.walk(None, lambda: next(reads), yes=True)  # type: ignore[arg-type]
    assert applied == ["env-perms", "start:redis"]
    assert final.ok


def test_guided_stops_at_a_prerequisite_it_cannot_fix(monkeypatch):
    venv = "sh: 1: /opt/zachot/envs/prod/bin/python: not found\nfailed: exit 127"
    stdout = _script(_units((*RUNNING, 1), ("inactive", "dead", 3), (*RUNNING, 2)), venv=venv)
    report = Report("prod4", evaluate(HOST, facts(stdout)), 0.1)
    applied: list[Fix] = []
    monkeypatch.setattr(guided, "apply", lambda ctx, fix, yes: applied.append(fix) and False)
    monkeypatch.setattr(Report, "show", lambda self: None)
    final = guided.walk(None, lambda: report, yes=True)  # type: ignore[arg-type]
    assert [f.command for f in applied] == ["fab -H prod4 restore.server"]  # no start attempted
    assert failed(final.rows)


# -- status -----------------------------------------------------------------------------


def test_status_rows_for_an_up_and_a_down_host():
    up = fleet.HostStatus(
        "prod4",
        units={"redis-server.service": "active", "zachot-worker.service": "inactive",
               "zachot-api.service": "active"},
        redis=PONG, ref="v1.2.0", commit=COMMIT, health="200",
        local={"env": NOW - timedelta(hours=2)}, offsite={"env": NOW - timedelta(days=1)},
    )  # fmt: skip
    row = fleet.row(up, NOW)
    assert row[1] == "zachot-worker inactive"
    assert row[2:] == ("up, 1 live worker(s)",
                       "default: 0 queued, 0 delayed, 0 in flight, 0 dead",
                       "v1.2.0 (299f172e)", "env 2h", "env 1d", "ok")  # fmt: skip
    assert fleet.outcome(up).exit_code == ExitCode.FAILED
    down = fleet.HostStatus("prod5", down="prod5 (10.231.7.2:2): connection refused", local={})
    assert fleet.row(down, NOW)[1] == "DOWN" and "connection refused" in fleet.row(down, NOW)[-1]
    assert fleet.outcome(down).exit_code == ExitCode.UNREACHABLE
    doc = fleet.as_json(down)
    assert doc["up"] is False
    assert doc["problems"] == ["down: prod5 (10.231.7.2:2): connection refused"]


def test_offsite_age_is_the_newest_complete_backup():
    complete = type("R", (), {"complete": True})()
    partial = type("R", (), {"complete": False})()
    found = fleet.newest({("env", "20261120T020000Z"): complete,
                          ("env", "20261123T020000Z-1"): complete,
                          ("env", "20261124T020000Z"): partial})  # fmt: skip
    assert found == {"env": datetime(2026, 11, 23, 2, tzinfo=UTC)}


def test_logscan_is_python37_syntax():
    # The server may run an older python3 than ours (no walrus, no match statement).
    ast.parse(Path(logscan.__file__).read_text(), feature_version=(3, 7))


def test_an_env_file_hidden_by_its_directory_is_not_called_missing():
    stdout = HEALTHY.replace(HEALTHY[HEALTHY.index("stat 600") : HEALTHY.index("@@zachot:code")],
                             "unreadable\n")  # fmt: skip
    row = by_item(evaluate(HOST, facts(stdout)))["env file /opt/zachot/envs/prod/etc/zachot.env"]
    assert row.state == NA and "closed to this user" in row.evidence and row.fix is None
