"""backup.routine against prod4 and the vault, with real receivers, and the systemd user timer.

The pings go to a real HTTP listener on this machine that records what arrived; the
metrics file is parsed with prometheus_client's own parser. The timer test runs a real
systemd user manager inside prod4 (this machine has none), installs the units that
scheduler.systemd_units renders, and moves the timer's stamp back to make Persistent=
catch up; the service there is a trivial one that appends to a file, since the toolkit
itself runs on the operator's side, not on prod4.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from fabfile.core import routine
from fabfile.core import scheduler as schedulers
from tests.integration.faults.lab import Lab, _lab

pytestmark = pytest.mark.integration
BOX = "prod4"


class Receiver(http.server.ThreadingHTTPServer):
    """A healthchecks.io stand-in: records (method, path, body) of every ping."""

    def __init__(self) -> None:
        self.pings: list[tuple[str, str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/ping/0f1e2d3c"


class _Handler(http.server.BaseHTTPRequestHandler):
    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.pings.append((self.command, self.path, self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST = do_HEAD = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(name="prod4")
def prod4_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, BOX)


def monitored(lab: Lab, receiver: Receiver, **host: object) -> Path:
    """The lab's inventory with the off-site copy, the pings and the metrics file on."""
    lab.configure(offsite=True, hosts={BOX: dict(host)} if host else None)
    data = yaml.safe_load(lab.inventory.read_text())
    metrics = lab.tmp / "textfile" / "zachot.prom"
    data["all"]["vars"]["backup"].update(
        healthcheck_url=receiver.url, metrics_file=str(metrics), routine_overdue_hours=1
    )
    lab.inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    return metrics


def test_routine_backs_up_copies_prunes_verifies_pings_and_writes_metrics(prod4, receiver):
    metrics = monitored(prod4, receiver)
    done = prod4.fab("backup.routine", timeout=300)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "Traceback" not in said
    assert " backup.routine start (pid " in said and " backup.routine end: exit 0 " in said
    assert "backup.routine: ok" in said  # the one summary
    # healthchecks.io protocol: /start, then the bare URL on success; no body, ever.
    assert [(m, p) for m, p, _ in receiver.pings] == [
        ("GET", "/ping/0f1e2d3c/start"), ("GET", "/ping/0f1e2d3c"),
    ]  # fmt: skip
    assert all(body == b"" for _, _, body in receiver.pings)
    assert {r.kind for r in prod4.store.list(BOX)} == {"env", "units"}

    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    env = [s for s in families["zachot_backup_last_success_timestamp_seconds"].samples
           if s.labels == {"host": BOX, "kind": "env"}]  # fmt: skip
    assert len(env) == 1 and abs(env[0].value - time.time()) < 600
    assert any(s.value > 0 for s in families["zachot_backup_last_size_bytes"].samples)
    assert [s.value for s in families["zachot_backup_routine_last_exit_code"].samples] == [0]
    assert [s.value for s in families["zachot_backup_routine_last_success"].samples] == [1]
    [age] = families["zachot_backup_offsite_newest_age_seconds"].samples
    assert age.labels == {"host": BOX} and 0 <= age.value < 600
    assert [s.value for s in families["zachot_backup_offsite_up"].samples] == [1]
    verified = {s.labels["kind"]: s.value for s in families["zachot_backup_last_verified"].samples}
    assert verified == {"env": 1, "units": 1}
    assert not list(metrics.parent.glob("*.tmp*"))  # written under a temp name, renamed

    # The record under the store: 0600, the run and its steps.
    record = routine.load(prod4.store.root, BOX)
    assert record.last.exit_code == 0 and record.last_success == record.last
    assert [s.name for s in record.last.steps] == ["backup", "off-site", "prune", "verify"]
    assert (routine.path(prod4.store.root).stat().st_mode & 0o777) == 0o600
    # --if-overdue: the last success is recent, so nothing runs and nothing is pinged.
    again = prod4.fab("backup.routine", "--if-overdue", timeout=60)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout and len(receiver.pings) == 2
    assert len(prod4.store.list(BOX, "env")) == 1
    shown = prod4.fab("backup.cron", "--show", "--scheduler", "cron", timeout=60)
    assert f"routine {BOX}: last run: " in shown.stdout and "exit 0 (ok)" in shown.stdout


def test_a_failing_routine_pings_its_exit_code(prod4, receiver):
    metrics = monitored(prod4, receiver, port=1)  # nothing listens there: connection refused
    done = prod4.fab("backup.routine", timeout=120)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert [p for _, p, _ in receiver.pings] == ["/ping/0f1e2d3c/start", "/ping/0f1e2d3c/4"]
    assert "skipped: backup failed" in done.stdout  # no prune the week backups failed
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    assert [s.value for s in families["zachot_backup_routine_last_exit_code"].samples] == [4]
    assert [s.value for s in families["zachot_backup_routine_last_success"].samples] == [0]
    record = routine.load(prod4.store.root, BOX)
    assert record.last.exit_code == 4 and record.last_success is None
    # Overdue (never succeeded): --if-overdue runs it, and it fails the same way.
    again = prod4.fab("backup.routine", "--if-overdue", timeout=120)
    assert again.returncode == 4 and receiver.pings[-1][1] == "/ping/0f1e2d3c/4"


# --- the systemd user timer, on a real user manager ------------------------------------

OPS = "ops"
UNITS = f"/home/{OPS}/.config/systemd/user"
STAMP = f"/home/{OPS}/.local/share/systemd/timers/stamp-{schedulers.TIMERS[0]}"
FIRED = f"/home/{OPS}/fired"


def as_ops(lab: Lab, script: str) -> str:
    uid = lab.sh(f"id -u {OPS}").strip()
    return lab.sh(f"runuser -u {OPS} -- env XDG_RUNTIME_DIR=/run/user/{uid} sh -c '{script}'")


def user_manager(lab: Lab) -> None:
    """ops's systemd --user, as linger starts it (prod4 lacks libpam-systemd, which would set
    XDG_RUNTIME_DIR; a runtime drop-in, gone at the box's reset, stands in for it)."""
    uid = lab.sh(f"loginctl enable-linger {OPS} && id -u {OPS}").strip()
    lab.sh(
        f"systemctl start user-runtime-dir@{uid}.service && "
        f"mkdir -p /run/systemd/system/user@{uid}.service.d && "
        f"printf '[Service]\\nEnvironment=XDG_RUNTIME_DIR=/run/user/{uid}\\n' "
        f"> /run/systemd/system/user@{uid}.service.d/runtime.conf && "
        f"systemctl daemon-reload && systemctl start user@{uid}.service"
    )
    assert as_ops(lab, "systemctl --user is-system-running").strip() in ("running", "degraded")


def fired(lab: Lab, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if lab.fleet.exec(lab.box, ["test", "-s", FIRED]).returncode == 0:
            return True
        time.sleep(0.3)
    return False


def test_systemd_user_timer_is_persistent_and_catches_up_a_missed_run(prod4):
    user_manager(prod4)
    # The units as backup.cron renders them; the job only proves it ran (`%` and `$` on
    # purpose: systemd would expand them if they were not escaped).
    units = schedulers.systemd_units(
        schedule="0 2 * * 0", command=f"echo \"$HOME\" $(date +%s) >> {FIRED}",
        catchup="true",
    )  # fmt: skip
    prod4.sh(f"install -d -o {OPS} -g {OPS} {UNITS}")
    for name, text in units.items():
        written = prod4.fleet.sh(BOX, f"cat > {UNITS}/{name} <<'UNIT'\n{text}UNIT\n")
        assert written.returncode == 0, written.stderr
    as_ops(prod4, f"systemctl --user daemon-reload && systemctl --user enable --now "
                  f"{' '.join(schedulers.TIMERS)}")  # fmt: skip
    listed = as_ops(prod4, "systemctl --user list-timers --all --no-pager")
    assert schedulers.TIMERS[0] in listed and schedulers.TIMERS[1] in listed
    nxt = as_ops(prod4, f"systemctl --user show {schedulers.TIMERS[0]} "
                        "-p NextElapseUSecRealtime --value").strip()  # fmt: skip
    assert nxt.startswith("Sun ") and nxt.endswith(" 02:00:00 UTC"), nxt

    # A stamp from just now: restarting the timer runs nothing (nothing was missed)...
    as_ops(prod4, f"mkdir -p {Path(STAMP).parent} && touch {STAMP} && "
                  f"systemctl --user restart {schedulers.TIMERS[0]}")  # fmt: skip
    assert not fired(prod4, within=3)
    # ...a stamp from 8 days ago (the laptop slept through Sunday): it runs at once.
    as_ops(prod4, f"touch -d \"8 days ago\" {STAMP} && "
                  f"systemctl --user restart {schedulers.TIMERS[0]}")  # fmt: skip
    assert fired(prod4, within=20)
    line = prod4.sh(f"cat {FIRED}").split()
    assert line[0] == f"/home/{OPS}" and abs(int(line[1]) - time.time()) < 120
