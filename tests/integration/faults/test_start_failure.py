"""A service won't start after a restore: a backup of a broken env file or unit, or the bad
commit deployed. The task fails at the health gate naming the step and the unit, the
pre-restore copy holds the good file, and the operator can undo."""

from __future__ import annotations

import pytest

from .lab import ENV, Lab, prod9_lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

FAULT = "a service won't start after a restore"
API_UNIT = "/etc/systemd/system/zachot-api.service"
START_STEP = "'start Redis and worker and API and wait for health' failed"
BREAK = {
    # kind: (file, sed script that breaks it, the unit that then dies)
    "env": (ENV, "s/^WORKER_CONCURRENCY=.*/WORKER_CONCURRENCY=many/", "zachot-worker.service"),
    "units": (API_UNIT, "s/-m zachot.api/-m zachot.no_such_module/", "zachot-api.service"),
}


@pytest.fixture(autouse=True)
def quick_gates(monkeypatch):
    """A gate that never passes gives up after 15 s instead of 60."""
    monkeypatch.setenv("FABRIC_RESTORE_HEALTH_TIMEOUT", "15")


def error_line(run) -> str:
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    return errors[0]


def backup_of(lab: Lab, kind: str) -> str:
    run = lab.fab(f"backup.{kind}")
    assert run.returncode == 0, run.stdout + run.stderr
    return lab.store.latest(lab.box, kind).id


def kept_copies(lab: Lab, path: str) -> dict[str, str]:
    said = lab.fleet.sh(lab.box, f"sha256sum {path}.pre-restore.* 2>/dev/null; true").stdout
    return {name: sha for sha, name in (line.split() for line in said.splitlines())}


@pytest.mark.fault(FAULT, checked="fails at the gate naming step and unit; the old file kept")
@pytest.mark.parametrize("kind", list(BREAK))
def test_restoring_a_broken_backup_stops_at_the_gate_and_can_be_undone(prod9, kind):
    path, sed, unit = BREAK[kind]
    good_id, good = backup_of(prod9, kind), prod9.sha256(path)
    prod9.sh(f"sed -i '{sed}' {path}")
    bad_id, bad = backup_of(prod9, kind), prod9.sha256(path)
    assert bad != good
    undo = prod9.fab(f"restore.{kind}", "--from", good_id, "--yes")  # the good file first
    assert undo.returncode == 0 and prod9.sha256(path) == good, undo.stdout + undo.stderr

    run = prod9.fab(f"restore.{kind}", "--from", bad_id, "--yes")
    assert run.returncode == 1, run.stdout + run.stderr
    line = error_line(run)
    assert START_STEP in line and f"{unit} crashed" in line, line
    assert ".pre-restore." in line and "re-run" in line
    assert prod9.sha256(path) == bad
    # The file it replaced is kept whole beside it: the undo is there.
    newest = max(kept_copies(prod9, path).items())
    assert newest[1] == good, newest
    assert prod9.sh(f"stat -c %a {newest[0]}").strip() == "600"  # private, like the env file

    back = prod9.fab(f"restore.{kind}", "--from", good_id, "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert prod9.sha256(path) == good and prod9.healthy()


@pytest.mark.fault(FAULT, checked="the bad commit: fails at the worker's gate; rollback undoes it")
def test_deploying_the_bad_commit_stops_at_the_gate_and_rolls_back(prod9):
    release = prod9.fab("deploy.release", "--to=bad", "--yes")
    assert release.returncode == 1, release.stdout + release.stderr
    line = error_line(release)
    assert "'start worker and wait for health' failed" in line
    assert "zachot-worker.service crashed" in line and "deploy.rollback" in line
    back = prod9.fab("deploy.rollback", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert prod9.healthy()
