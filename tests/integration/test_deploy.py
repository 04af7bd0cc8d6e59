"""deploy.release and deploy.rollback (runbook scenario 3) on the sandbox's prod2 box.

prod2 runs v1.2.0, detached, like prod. The served repo's `bad` commit (on top of
v1.2.0) reads a setting no env file has, so its code dies at import.
"""

from __future__ import annotations

import json
import re

import pytest

from fabfile.core.inventory import load_inventory

pytestmark = pytest.mark.integration

BOX = "prod2"
REPO = "/opt/zachot/repo"
HISTORY = "/var/lib/zachot-ops/revisions.log"
RTO_TARGET = 20.0  # seconds; the runbook allows 5-15 min


@pytest.fixture
def prod2(fleet, monkeypatch):
    """A fresh prod2; a gate that never passes gives up after 15 s instead of 60."""
    fleet.reset(BOX)
    monkeypatch.setenv("FABRIC_RESTORE_HEALTH_TIMEOUT", "15")
    booted = boot_id(fleet)
    yield fleet
    # A reset from elsewhere mid-test would make any result here meaningless.
    assert boot_id(fleet) == booted, f"{BOX} was rebooted by someone else during the test"


def boot_id(fleet) -> str:
    return fleet.exec(BOX, ["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip()


def git(fleet, *args: str) -> str:
    said = fleet.exec(BOX, ["git", "-c", "safe.directory=*", "-C", REPO, *args])
    assert said.returncode == 0, said.stderr
    return said.stdout.strip()


def commit_of(fleet, ref: str) -> str:
    return git(fleet, "rev-parse", f"{ref}^{{commit}}")


def history(fleet) -> list[dict]:
    said = fleet.exec(BOX, ["sh", "-c", f"[ ! -e {HISTORY} ] || cat {HISTORY}"]).stdout
    return [json.loads(line) for line in said.splitlines() if line.strip()]


def total(run) -> float:
    found = re.search(r"total ([0-9.]+) s \(runbook: 5-15 min\)", run.stdout)
    assert found, run.stdout
    return float(found.group(1))


def deploy(fleet, *args: str):
    run = fleet.fab("-H", BOX, *args)
    print(run.stdout, run.stderr)  # the plan and the step table, shown when a test fails
    return run


def test_bad_release_fails_at_a_health_gate_then_rollbacks_skip_the_bad_ref(prod2):
    v120, v110, bad = (commit_of(prod2, r) for r in ("v1.2.0", "v1.1.0", "bad"))
    assert git(prod2, "rev-parse", "HEAD") == v120

    release = deploy(prod2, "deploy.release", "--to=bad", "--yes")
    assert release.returncode == 1
    # The bad code dies at import; the worker starts first, so its gate is the one that fails.
    assert "step 6 'start worker and wait for health' failed" in release.stderr
    assert "zachot-worker.service crashed" in release.stderr  # seen at once, not at the timeout
    assert "recorded as failed" in release.stderr and "deploy.rollback" in release.stderr
    assert "KeyError: 'ZACHOT_FEATURE_FLAGS'" in release.stdout  # the error log's tail
    assert git(prod2, "rev-parse", "HEAD") == bad
    assert prod2.health(BOX)[0] != 200
    [failed] = history(prod2)
    assert failed["action"] == "release" and failed["result"] == "failed"
    assert failed["commit"] == failed["bad"] == bad and failed["previous"] == v120

    first = deploy(prod2, "deploy.rollback", "--yes")
    assert first.returncode == 0
    assert git(prod2, "rev-parse", "HEAD") == v120
    status, body = prod2.health(BOX)
    assert status == 200 and body["version"] == "v1.2.0"
    assert prod2.job_processed(BOX)
    rolled = history(prod2)[-1]
    assert (rolled["action"], rolled["result"], rolled["commit"]) == ("rollback", "ok", v120)
    assert rolled["bad"] == bad
    assert total(first) <= RTO_TARGET

    second = deploy(prod2, "deploy.rollback", "--yes")
    assert second.returncode == 0
    assert git(prod2, "rev-parse", "HEAD") == v110  # not back to bad
    status, body = prod2.health(BOX)
    assert status == 200 and body["version"] == "v1.1.0"
    assert history(prod2)[-1]["commit"] == v110 and history(prod2)[-1]["bad"] == v120
    assert total(second) <= RTO_TARGET


def test_release_rolls_forward_and_a_rerun_changes_nothing(prod2):
    v100, v120 = commit_of(prod2, "v1.0.0"), commit_of(prod2, "v1.2.0")
    back = deploy(prod2, "deploy.rollback", "--to=v1.0.0", "--yes")
    assert back.returncode == 0 and git(prod2, "rev-parse", "HEAD") == v100
    assert prod2.health(BOX)[1]["version"] == "v1.0.0"

    forward = deploy(prod2, "deploy.release", "--to=v1.2.0", "--yes")
    assert forward.returncode == 0
    assert git(prod2, "rev-parse", "HEAD") == v120
    assert prod2.health(BOX) == (200, {"status": "ok", "redis": True, "version": "v1.2.0"})
    entries = history(prod2)
    assert [(e["action"], e["result"]) for e in entries] == [("rollback", "ok"), ("release", "ok")]
    assert entries[-1]["bad"] is None and entries[-1]["previous"] == v100
    pids = main_pids(prod2)

    again = deploy(prod2, "deploy.release", "--to=v1.2.0", "--yes")
    assert again.returncode == 0
    assert "already runs v1.2.0" in again.stdout
    assert main_pids(prod2) == pids and len(history(prod2)) == 2


def test_a_changed_requirements_txt_is_installed_from_find_links(prod2):
    """A commit only in prod2's clone (the served repo is shared) that changes requirements.txt."""
    commit = (
        "printf '# pinned for the deploy test\\n' >> requirements.txt && "
        "git -c user.name=t -c user.email=t@t.invalid commit -q -am 'Pin a comment' && "
        "git tag local-reqs && git -c advice.detachedHead=false checkout -q v1.2.0"
    )
    made = prod2.exec(BOX, ["runuser", "-u", "zachot", "--", "env", f"--chdir={REPO}",
                            "sh", "-c", commit])  # fmt: skip
    assert made.returncode == 0, made.stderr
    repo_url = load_inventory(prod2.inventory).host(BOX).layout.repo_url
    wheels = repo_url.rsplit("/", 1)[0] + "/wheels/"
    marker = "/opt/zachot/envs/prod/.zachot-requirements.sha256"

    run = deploy(prod2, "deploy.release", "--to=local-reqs", f"--find-links={wheels}", "--yes")
    assert run.returncode == 0
    assert "requirements.txt differs between HEAD and local-reqs" in run.stdout
    assert f"installed requirements.txt from wheels from {wheels} (no index)" in run.stdout
    installed = prod2.exec(BOX, ["cat", marker]).stdout.strip()
    assert installed == prod2.exec(BOX, ["sha256sum", f"{REPO}/requirements.txt"]).stdout.split()[0]
    assert prod2.health(BOX)[1]["version"] == "local-reqs"

    back = deploy(prod2, "deploy.rollback", f"--find-links={wheels}", "--yes")
    assert back.returncode == 0
    assert f"installed requirements.txt from wheels from {wheels}" in back.stdout
    assert prod2.health(BOX)[1]["version"] == "v1.2.0"
    assert prod2.exec(BOX, ["cat", marker]).stdout.strip() != installed


def main_pids(fleet) -> list[str]:
    units = ["redis-server", "zachot-worker", "zachot-api"]
    said = fleet.exec(BOX, ["systemctl", "show", "-p", "MainPID", "--value", *units]).stdout
    return said.split()


def snapshot(fleet) -> str:
    """Every file under /opt/zachot but the logs, HEAD, the run lock and the service PIDs."""
    script = (
        "find /opt/zachot -path /opt/zachot/logs -prune -o -name __pycache__ -prune "
        "-o -type f -print0 | sort -z | xargs -0 sha256sum; "
        "ls -A /opt/zachot /run/lock; "
        f"git -c safe.directory='*' -C {REPO} rev-parse HEAD"
    )
    said = fleet.sh(BOX, script)
    assert said.returncode == 0, said.stderr
    return said.stdout + " ".join(main_pids(fleet))


@pytest.mark.parametrize(
    ("args", "target"),
    [(("deploy.rollback",), "v1.1.0"), (("deploy.release", "--to=bad"), "bad")],
)
def test_dry_run_changes_nothing(prod2, args, target):
    before = snapshot(prod2)
    run = deploy(prod2, *args, "--dry-run")
    assert run.returncode == 0
    assert f"{args[0]} to {target}" in run.stdout
    assert "(dry run, nothing changes)" in run.stdout
    assert "would git log --oneline -10" in run.stdout
    assert f"would log: {commit_of(prod2, 'v1.2.0')[:7]} (HEAD, tag: v1.2.0)" in run.stdout
    assert snapshot(prod2) == before
    assert not history(prod2)
