"""Concurrency: two backup.all runs on one store, two restores on one host, the laptop's
cron entry firing during a manual run. One waits or fails clearly (exit 75, naming the
holder), and the store and the host stay consistent.

The first run is held on the server (its transfer agent waits before reading or writing),
so the second surely starts while the first holds its lock, however fast the box is.
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from . import inject
from .lab import ENV, Lab, prod11_lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

FAULT = "concurrency"
HOLD = 6.0  # seconds the first run is held on the server
HOLDER = f"{socket.gethostname()} pid "


def held(lab: Lab, op: str, path: str, seconds: float = HOLD):
    """The agent's `op` ("read" or "write") of `path` in the lab's box waits `seconds`."""
    return inject.held_op(lab.fleet, lab.box, op, path, seconds)


def started_and_holding(lab: Lab, *args: str) -> subprocess.Popen[str]:
    """Start a fab run and return once the box holds it (so it holds its locks)."""
    run = lab.started(*args)
    inject.wait_until(lambda: inject.held_writer(lab.fleet, lab.box), "the first run to be held")
    return run


def finished(run: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    stdout, stderr = run.communicate(timeout=timeout)
    return run.returncode, stdout, stderr


def store_consistent(lab: Lab) -> None:
    assert lab.store.problems() == []
    assert inject.leftovers(lab.store.root) == []
    assert not (lab.store.root / ".lock").exists()


@pytest.mark.fault(FAULT, checked="two backup.all on one store: the second waits, both land")
def test_two_backups_on_one_store_the_second_waits(prod11):
    with held(prod11, "read", ENV):
        first = started_and_holding(prod11, "backup.all")
        second = prod11.started("backup.all")
        (code1, out1, err1), (code2, out2, err2) = finished(first), finished(second)
    assert (code1, code2) == (0, 0), out1 + err1 + out2 + err2
    store_consistent(prod11)
    for kind in ("env", "units"):
        older, newer = prod11.store.list(prod11.box, kind)
        assert older.id != newer.id
        # The second ran after the first committed: it found the same content and refers to it.
        assert all(r.stored_in == older.id for r in newer.manifest.files), kind


@pytest.mark.fault(FAULT, checked="lock_timeout 0: the second exits 75 naming the holder")
def test_two_backups_with_no_wait_the_second_fails_clearly(prod11):
    prod11.configure(hosts={prod11.box: {"store": {"lock_timeout": 0}}})
    with held(prod11, "read", ENV):
        first = started_and_holding(prod11, "backup.all")
        refused = prod11.fab("backup.all")
        code1, out1, err1 = finished(first)
    assert refused.returncode == 75, refused.stdout + refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert f"store is locked by {HOLDER}{first.pid} " in line and "(backup.all)" in line, line
    assert code1 == 0, out1 + err1
    store_consistent(prod11)
    assert [len(prod11.store.list(prod11.box, k)) for k in ("env", "units")] == [1, 1]


@pytest.mark.fault(FAULT, checked="two restores on one host: the second exits 75 naming the holder")
def test_two_restores_on_one_host_the_second_is_refused(prod11):
    assert prod11.fab("backup.env").returncode == 0
    backup = prod11.store.latest(prod11.box, "env")
    wanted = backup.manifest.file("zachot.env.age").sha256
    prod11.sh(f"printf 'EXTRA_KEY=1\\n' >> {ENV}")  # so the restore has a file to push
    with held(prod11, "write", ENV):
        first = started_and_holding(prod11, "restore.env", "--yes")
        second = prod11.fab("restore.env", "--yes")
        code1, out1, err1 = finished(first)
    assert second.returncode == 75, second.stdout + second.stderr
    line = second.stderr.strip().splitlines()[-1]
    assert f"another recovery holds the run lock: {HOLDER}{first.pid} " in line, line
    assert "(restore.env)" in line and "restore.unlock" in line, line
    assert "Traceback" not in second.stdout + second.stderr
    assert code1 == 0, out1 + err1
    # The host is as the one restore left it: the backup's bytes, 0600, healthy, unlocked.
    assert prod11.sha256(ENV) == wanted
    meta = prod11.fleet.exec(prod11.box, ["stat", "-c", "%a %U:%G", ENV]).stdout.strip()
    assert meta == "600 zachot:zachot"
    assert prod11.healthy()
    assert inject.run_lock_free(prod11.fleet, prod11.box)
    assert prod11.fleet.exec(prod11.box, ["test", "-e", "/run/zachot-ops/lock"]).returncode


@pytest.mark.parametrize("lock_timeout", [0, 30])
@pytest.mark.fault(FAULT, checked="cron during a manual run: 75 and one log line, or it waits")
def test_the_laptop_cron_firing_during_a_manual_run(prod11, lock_timeout):
    prod11.configure(hosts={prod11.box: {"store": {"lock_timeout": lock_timeout}}})
    log = prod11.tmp / "backup-cron.log"
    with held(prod11, "read", ENV):
        manual = started_and_holding(prod11, "backup.all")
        code = prod11.cron_fires(log)
        manual_code, out, err = finished(manual)
    assert manual_code == 0, out + err
    lines = log.read_text().splitlines()
    assert "Traceback" not in log.read_text()
    assert " backup.all start (pid " in lines[0] and f" backup.all end: exit {code} " in lines[-1]
    errors = [line for line in lines if line.startswith("error: ")]
    if lock_timeout == 0:
        assert code == 75, lines
        assert len(lines) == 3 and len(errors) == 1, lines
        assert f"store is locked by {HOLDER}{manual.pid} " in errors[0], errors
    else:
        assert code == 0 and errors == [], lines  # it waited for the manual run, then ran
    store_consistent(prod11)
    expected = 1 if lock_timeout == 0 else 2
    assert [len(prod11.store.list(prod11.box, k)) for k in ("env", "units")] == [expected] * 2
