"""The sandbox's own "done when" checks (issue 3), against the real boxes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from sandbox import box, procs
from sandbox import fleet as fleet_mod
from sandbox.config import API_PORT
from sandbox.state import recorded_specs

pytestmark = pytest.mark.integration

ENV_FILE = "/opt/zachot/envs/prod/etc/zachot.env"


def wait_for(check, timeout: float = 30, step: float = 0.3):
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > end:
            return result
        time.sleep(step)


def test_inventory_points_at_the_boxes(fleet):
    data = yaml.safe_load(fleet.inventory.read_text())["all"]
    assert set(data["hosts"]) >= {"prod", "new-box", "vault"}
    assert data["vars"]["identity_file"] == str(fleet.key)
    assert data["vars"]["host_key_policy"] == "strict"
    assert data["hosts"]["vault"] == {
        "address": fleet.addresses["vault"],
        "port": 22,
        "user": "vault",
        "sudo": False,
    }
    assert data["hosts"]["new-box"]["scratch"] is True
    known = fleet.known_hosts.read_text().splitlines()
    assert {line.split()[0] for line in known} >= set(fleet.addresses.values())
    assert all(line.split()[1] == "ssh-ed25519" for line in known)


def test_prod_services_active(fleet):
    r = fleet.exec(
        "prod", ["systemctl", "is-active", "zachot-api", "zachot-worker", "redis-server"]
    )
    assert r.stdout.split() == ["active", "active", "active"], r.stdout + r.stderr
    enabled = fleet.exec("prod", ["systemctl", "is-enabled", "zachot-api", "zachot-worker"])
    assert enabled.stdout.split() == ["enabled", "enabled"]


def test_health_answers_from_operator_side(fleet):
    status, body = fleet.health("prod")
    assert status == 200
    assert body == {"status": "ok", "redis": True, "version": "v1.2.0"}


def test_job_enqueued_on_prod_redis_is_processed(fleet):
    job = f"it-{uuid.uuid4().hex[:8]}"
    # Enqueue straight into prod's Redis with the app's own actor, as the service user.
    enqueue = (
        "cd /opt/zachot/repo && set -a && . " + ENV_FILE + " && set +a && "
        "PYTHONDONTWRITEBYTECODE=1 runuser -u zachot -- /opt/zachot/envs/prod/bin/python -c "
        f"\"from zachot.tasks import record_job; record_job.send('{job}')\""
    )
    r = fleet.sh("prod", enqueue)
    assert r.returncode == 0, r.stderr
    done = wait_for(
        lambda: (
            fleet.exec("prod", ["redis-cli", "SISMEMBER", "zachot:done", job]).stdout.strip() == "1"
        )
    )
    assert done, "worker did not record the job"


def test_job_posted_to_api_is_processed(fleet):
    addr = fleet.addresses["prod"]
    req = urllib.request.Request(
        f"http://{addr}:{API_PORT}/jobs",
        data=b'{"id": "api-job"}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 202

    def done():
        with urllib.request.urlopen(f"http://{addr}:{API_PORT}/jobs/api-job", timeout=5) as r:
            return json.loads(r.read())["done"]

    assert wait_for(done)


def test_prod_layout_matches_runbook(fleet):
    r = fleet.sh("prod", f"stat -c '%a %U:%G' {ENV_FILE}; cut -d= -f1 {ENV_FILE} | grep -v '^#'")
    lines = r.stdout.split("\n")
    assert lines[0] == "600 zachot:zachot"
    assert {"REDIS_URL", "WORKER_CONCURRENCY", "API_SECRET_KEY", "SENTRY_DSN"} <= set(lines[1:])
    unit = fleet.exec("prod", ["cat", "/etc/systemd/system/zachot-api.service"]).stdout
    assert f"EnvironmentFile={ENV_FILE}" in unit and "append:/opt/zachot/logs/api.log" in unit
    logs = fleet.exec("prod", ["ls", "/opt/zachot/logs"]).stdout.split()
    assert "api.log.1" in logs and "api.log.7.gz" in logs and "worker.err.3.gz" in logs
    assert fleet.exec("prod", ["test", "-f", "/etc/logrotate.d/zachot"]).returncode == 0
    save = fleet.exec("prod", ["redis-cli", "CONFIG", "GET", "save"]).stdout.split("\n")[1]
    assert save.strip(), "RDB persistence is off"
    tags = fleet.sh(
        "prod",
        "runuser -u zachot -- git -C /opt/zachot/repo describe --tags; "
        "runuser -u zachot -- git -C /opt/zachot/repo tag -l",
    )
    assert tags.stdout.split() == ["v1.2.0", "bad", "v1.0.0", "v1.1.0", "v1.2.0"]
    assert fleet.exec("prod", ["test", "-d", "/opt/zachot/backups"]).returncode == 0


def test_operator_ssh_and_no_root_login(fleet):
    ok = subprocess.run(
        [*fleet.ssh_argv("prod"), "sudo -n id -un"], capture_output=True, text=True, timeout=30
    )
    assert ok.stdout.strip() == "root", ok.stderr
    root = subprocess.run(
        [*fleet.ssh_argv("prod", user="root"), "true"], capture_output=True, timeout=30
    )
    assert root.returncode == 255


def test_vault_is_sftp_only(fleet):
    base = fleet_mod.ssh_base(fleet.paths)
    target = f"vault@{fleet.addresses['vault']}"
    name = f"probe-{uuid.uuid4().hex[:6]}"
    sftp = subprocess.run(
        ["sftp", *base, "-b", "-", target],
        input=f"put /etc/hostname {name}\nls\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert sftp.returncode == 0, sftp.stderr
    assert name in sftp.stdout
    shell = subprocess.run(["ssh", *base, target, "id"], capture_output=True, text=True, timeout=30)
    assert "id" not in shell.stdout and "uid=" not in shell.stdout
    fleet.exec("vault", ["rm", "-f", f"/srv/vault/backups/{name}"])


def test_new_box_has_no_trace_of_zachot(fleet):
    fleet.reset("new-box")  # earlier tests restore zachot onto it; this checks the image
    r = fleet.sh(
        "new-box",
        "id zachot; ls -d /opt/zachot /etc/systemd/system/zachot*; "
        "systemctl list-unit-files 'zachot*' --no-legend",
    )
    assert "uid=" not in r.stdout and r.stdout.strip() == "", r.stdout
    pkgs = ["python3", "python3-venv", "python3-pip", "redis-server", "git", "sudo"]
    assert fleet.exec("new-box", ["dpkg", "-s", *pkgs]).returncode == 0
    sudo = subprocess.run(
        [*fleet.ssh_argv("new-box"), "sudo -n true"], capture_output=True, timeout=30
    )
    assert sudo.returncode == 0


def test_health_reports_redis_down(fleet):
    try:
        fleet.exec("prod", ["systemctl", "stop", "redis-server"])
        status, body = fleet.health("prod")
        assert (status, body["redis"], body["status"]) == (503, False, "degraded")
    finally:
        fleet.exec("prod", ["systemctl", "start", "redis-server"])


def test_bad_commit_fails_at_start_and_reset_restores(fleet):
    try:
        broken = fleet.sh(
            "prod",
            "runuser -u zachot -- git -C /opt/zachot/repo checkout -q bad && "
            "touch /opt/zachot/marker && systemctl restart zachot-api; true",
        )
        assert broken.returncode == 0, broken.stderr
        # The bad commit's API dies at import; systemd keeps retrying it.
        assert wait_for(
            lambda: "KeyError" in fleet.exec("prod", ["cat", "/opt/zachot/logs/api.err"]).stdout,
            timeout=20,
        )
        assert wait_for(lambda: fleet.health("prod")[0] is None, timeout=20)
        fleet.exec("prod", ["rm", ENV_FILE])
    finally:
        t0 = time.monotonic()
        fleet.reset("prod")
        took = time.monotonic() - t0
    assert took < 60, f"reset took {took:.1f}s"
    after = fleet.sh("prod", f"test -f {ENV_FILE} && test ! -e /opt/zachot/marker && echo clean")
    assert after.stdout.strip() == "clean"
    assert fleet.health("prod") == (200, {"status": "ok", "redis": True, "version": "v1.2.0"})


def test_up_is_idempotent(fleet):
    specs = recorded_specs(fleet.paths)
    before = {s.name: box.nspawn_pid(fleet.paths, s) for s in specs}
    fleet_mod.up(extra_prod=len(specs) - 3, paths=fleet.paths, log=lambda _m: None)
    after = {s.name: box.nspawn_pid(fleet.paths, s) for s in specs}
    assert before == after and None not in after.values()


def test_reset_new_box_drops_changes(fleet):
    fleet.sh("new-box", "mkdir -p /opt/zachot && useradd -r zachot")
    fleet.reset("new-box")
    r = fleet.sh("new-box", "id zachot; ls -d /opt/zachot")
    assert r.stdout.strip() == ""


def test_up_recovers_after_crash(fleet):
    """nspawn and the repo server killed hard: up cleans the orphaned container and reboots."""
    specs = {s.name: s for s in recorded_specs(fleet.paths)}
    vault = specs["vault"]
    orphan = box.leader_pid(fleet.paths, vault)
    nspawn = box.nspawn_pid(fleet.paths, vault)
    procs.kill(nspawn, signal.SIGKILL)
    procs.kill(int(fleet.paths.server_pid.read_text()), signal.SIGKILL)
    assert procs.wait_gone(nspawn, 5)  # SIGKILL lands asynchronously
    assert not box.is_running(fleet.paths, vault)
    fleet_mod.up(extra_prod=len(specs) - 3, paths=fleet.paths, log=lambda _m: None)
    assert procs.wait_gone(orphan, 5)  # gone or a zombie awaiting the host init
    in_netns = procs.pids_in_netns(Path("/run/netns", vault.netns))
    inits = [p for p in in_netns if procs.is_pidns_init(p)]
    assert inits == [box.leader_pid(fleet.paths, vault)]
    assert fleet_mod.ssh_ok(fleet.paths, vault)


def _traces(fleet) -> list[str]:
    """Everything of the sandbox's that could outlive it: netns, links, mounts, processes."""
    specs = recorded_specs(fleet.paths)
    left = [f"netns {s.netns}" for s in specs if Path("/run/netns", s.netns).exists()]
    left += [f"link {s.veth_host}" for s in specs if Path("/sys/class/net", s.veth_host).exists()]
    state = str(fleet.paths.root)
    left += [
        f"mount {ln.split()[4]}"
        for ln in Path("/proc/self/mountinfo").read_text().splitlines()
        if state in ln
    ]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if state in cmd and "pytest" not in cmd:
                left.append(f"process {proc.name}: {cmd[:100]}")
    return left


def test_down_leaves_nothing_then_up_again(fleet):
    """Last on purpose: takes the fleet down, checks for leftovers, brings it back."""
    specs = recorded_specs(fleet.paths)
    leaders = [box.leader_pid(fleet.paths, s) for s in specs]
    assert None not in leaders
    fleet_mod.down(fleet.paths, log=lambda _m: None)
    try:
        assert _traces(fleet) == []
        assert all(not Path(f"/proc/{pid}").exists() for pid in leaders)
        assert not fleet.inventory.exists()
    finally:
        fleet_mod.up(extra_prod=len(specs) - 3, paths=fleet.paths, log=lambda _m: None)
    assert fleet.health("prod")[0] == 200
