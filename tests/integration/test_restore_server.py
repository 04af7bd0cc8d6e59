"""restore.server (runbook scenario 1): new-box rebuilt from prod3's backups.

The module fixture resets new-box, backs up prod3, runs a dry run (which must
change nothing) and then the real restore; the tests check its result. The
last two tests change new-box on purpose (a forced redeploy, then a reset for
a run that fails and resumes), so they stay at the end of the file.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.integration

NEW, SOURCE = "new-box", "prod3"
ENV = "/opt/zachot/envs/prod/etc/zachot.env"
UNITS = ("/etc/systemd/system/zachot-api.service", "/etc/systemd/system/zachot-worker.service")
STACK = ("redis-server", "zachot-worker", "zachot-api")
TITLES = (
    "install the base packages",
    "create the zachot user and the /opt/zachot directories",
    "clone the repo at",
    "restore the env file and the units",
    "create the venv and pip install -r requirements.txt",
    "create the logs directory",
    "start Redis and worker and API and wait for health",
)
TOTAL = re.compile(r"total ([0-9.]+) s \(runbook: 30-60 min\)")
RTO_TARGET = 180.0  # seconds, with the wheelhouse (issue 5's benchmark table)


@dataclass
class Rebuild:
    before: str
    dry: subprocess.CompletedProcess[str]
    after_dry: str
    run: subprocess.CompletedProcess[str]


def restore(fleet, *args: str) -> subprocess.CompletedProcess[str]:
    wheels = ("--wheelhouse", str(fleet.paths.wheels))
    return fleet.fab("-H", NEW, "restore.server", "--source", SOURCE, *wheels, *args)


def snapshot(fleet) -> str:
    """What restore.server could touch on new-box: users, files, units, packages, locks."""
    script = (
        "getent passwd zachot; getent group zachot; "
        "find /opt /etc/systemd/system /run/lock -xdev -printf '%p %s %m %u:%g %T@\\n' | sort; "
        "sha256sum /etc/passwd /etc/group; "
        "systemctl is-active redis-server zachot-worker zachot-api; "
        "dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n' | sha256sum; true"
    )
    return fleet.sh(NEW, script).stdout


def steps_table(run: subprocess.CompletedProcess[str]) -> list[list[str]]:
    """The final report's rows (plain, tab-separated when not on a TTY)."""
    rows = [line.split("\t") for line in run.stdout.splitlines()]
    return [r for r in rows if len(r) == 5 and r[0].isdigit()]


def head(fleet, box: str) -> str:
    git = ["git", "-C", "/opt/zachot/repo", "rev-parse", "HEAD"]
    return fleet.exec(box, ["runuser", "-u", "zachot", "--", *git]).stdout.strip()


def secret_values(fleet) -> list[str]:
    text = fleet.exec(SOURCE, ["cat", ENV]).stdout
    return [ln.split("=", 1)[1] for ln in text.splitlines() if "SECRET" in ln or "DSN" in ln]


@pytest.fixture(scope="module")
def rebuilt(fleet) -> Rebuild:
    fleet.claim(SOURCE)
    fleet.reset(NEW)
    backup = fleet.fab("-H", SOURCE, "backup.all")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    before = snapshot(fleet)
    dry = restore(fleet, "--dry-run")
    after_dry = snapshot(fleet)
    run = restore(fleet, "--yes")
    return Rebuild(before, dry, after_dry, run)


def test_dry_run_shows_every_step_and_changes_nothing(rebuilt):
    assert rebuilt.dry.returncode == 0, rebuilt.dry.stderr
    assert "dry run, nothing changes" in rebuilt.dry.stdout
    for number, title in enumerate(TITLES, 1):
        assert f"  {number}. {title}" in rebuilt.dry.stdout
    assert "would diff: create the file with 6 keys" in rebuilt.dry.stdout
    assert "no apt-get update" in rebuilt.dry.stdout  # new-box has the base packages
    assert rebuilt.after_dry == rebuilt.before
    assert "zachot:" not in rebuilt.before and "/opt/zachot" not in rebuilt.before


def test_restore_runs_seven_steps_and_the_api_answers(rebuilt, fleet):
    assert rebuilt.run.returncode == 0, rebuilt.run.stdout + rebuilt.run.stderr
    rows = steps_table(rebuilt.run)
    assert [r[2] for r in rows] == ["ok"] * 7
    assert [r[1].startswith(t) for r, t in zip(rows, TITLES, strict=True)] == [True] * 7
    status, body = fleet.health(NEW)
    assert status == 200 and body["redis"] is True
    assert body["version"] == fleet.health(SOURCE)[1]["version"]
    active = fleet.exec(NEW, ["systemctl", "is-active", *STACK]).stdout.split()
    enabled = fleet.exec(NEW, ["systemctl", "is-enabled", *STACK]).stdout.split()
    assert active == ["active"] * 3 and enabled == ["enabled"] * 3


def test_env_file_is_byte_identical_and_private(rebuilt, fleet):
    assert rebuilt.run.returncode == 0
    digest = ["sha256sum", ENV, *UNITS]
    assert fleet.exec(NEW, digest).stdout == fleet.exec(SOURCE, digest).stdout
    meta = fleet.exec(NEW, ["stat", "-c", "%a %U:%G", ENV]).stdout.strip()
    assert meta == "600 zachot:zachot"


def test_deployed_commit_is_the_sources(rebuilt, fleet):
    assert rebuilt.run.returncode == 0
    assert head(fleet, NEW) == head(fleet, SOURCE) != ""


def test_a_job_enqueued_on_new_box_is_processed_by_its_worker(rebuilt, fleet):
    assert rebuilt.run.returncode == 0
    assert fleet.job_processed(NEW)


def test_no_secret_reaches_the_output(rebuilt, fleet):
    values = secret_values(fleet)
    assert values
    for run in (rebuilt.dry, rebuilt.run):
        assert not any(v in run.stdout + run.stderr for v in values)


def test_rto_is_within_target(rebuilt, record_property):
    found = TOTAL.search(rebuilt.run.stdout)
    assert found, rebuilt.run.stdout
    total = float(found.group(1))
    record_property("restore_server_rto_seconds", total)
    print(f"restore.server onto {NEW}: measured RTO {total} s (target {RTO_TARGET} s)")
    assert total <= RTO_TARGET, f"restore.server took {total} s (target {RTO_TARGET} s)"


def test_second_run_skips_every_step(rebuilt, fleet):
    assert rebuilt.run.returncode == 0
    again = restore(fleet, "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    rows = steps_table(again)
    assert [r[4] for r in rows] == ["already done, skipped"] * 7
    assert fleet.health(NEW)[0] == 200


def test_a_live_server_is_only_replaced_with_force(rebuilt, fleet):
    """Changes new-box: it ends on v1.1.0."""
    assert rebuilt.run.returncode == 0
    deployed = head(fleet, NEW)
    refused = restore(fleet, "--yes", "--ref", "v1.1.0")
    assert refused.returncode == 2
    assert "already runs a healthy zachot API" in refused.stderr and "--force" in refused.stderr
    assert head(fleet, NEW) == deployed
    forced = restore(fleet, "--yes", "--ref", "v1.1.0", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    rows = steps_table(forced)
    assert rows[0][1] == "stop API and worker" and rows[0][2] == "ok"
    assert fleet.health(NEW) == (200, {"status": "ok", "redis": True, "version": "v1.1.0"})


def test_missing_package_installed_and_a_failed_run_resumes(fleet, tmp_path):
    """Resets new-box. python3-pip removed and offered by a local apt source (the box has
    no mirror); pip without a wheel source fails at step 5; the re-run resumes there."""
    fleet.reset(NEW)
    local_repo = (
        "set -e; dpkg -r python3-pip >/dev/null; mkdir -p /srv/debs; "
        "cp /var/cache/apt/archives/python3-pip_*.deb /srv/debs/; cd /srv/debs; "
        'for f in *.deb; do dpkg-deb -f "$f"; echo "Filename: ./$f"; '
        'echo "Size: $(stat -c %s "$f")"; echo "SHA256: $(sha256sum "$f" | cut -d" " -f1)"; '
        "echo; done > Packages; "
        "echo 'deb [trusted=yes] file:/srv/debs ./' > /etc/apt/sources.list.d/local.list"
    )
    prepared = fleet.sh(NEW, local_repo)
    assert prepared.returncode == 0, prepared.stderr
    no_wheels = fleet.without_wheelhouse(tmp_path)  # the sandbox inventory names one
    failed = no_wheels.fab("-H", NEW, "restore.server", "--source", SOURCE, "--yes")
    assert failed.returncode == 1
    rows = steps_table(failed)
    assert rows[0][4] == "installed python3-pip"
    assert [r[2] for r in rows] == ["ok"] * 4 + ["FAILED"], failed.stdout
    assert "step 5" in failed.stderr and "--wheelhouse" in failed.stderr
    assert "re-run the same command" in failed.stderr
    resumed = restore(fleet, "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = steps_table(resumed)
    assert [r[4] for r in rows[:4]] == ["already done, skipped"] * 4
    assert [r[2] for r in rows] == ["ok"] * 7
    assert fleet.health(NEW)[0] == 200
