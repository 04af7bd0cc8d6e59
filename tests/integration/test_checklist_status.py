"""checklist and status against the sandbox: prod4 is broken and fixed; prod5 is only read.

prod4 is reset at the start of every test.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time

import pytest

from tests.integration.conftest import Fleet

pytestmark = pytest.mark.integration

BOX = "prod4"
ENV = "/opt/zachot/envs/prod/etc/zachot.env"
RESTART_ALL = (
    "ssh prod4 'sudo systemctl stop zachot-api.service zachot-worker.service "
    "redis-server.service && sudo systemctl start redis-server.service && sudo systemctl start "
    "zachot-worker.service && sudo systemctl start zachot-api.service'"
)
ENV_PERMS = f"ssh prod4 'sudo chown zachot:zachot {ENV} && sudo chmod 0600 {ENV}'"
HEAD = "git -c safe.directory=/opt/zachot/repo -C /opt/zachot/repo rev-parse HEAD"
CHECKLIST_BUDGET = 5.0  # seconds: "fast, over one connection"


@pytest.fixture(scope="module")
def backed_up(fleet: Fleet) -> Fleet:
    """prod4 fresh and backed up once, so the backup and code rows have a record to compare."""
    fleet.claim("prod5")
    fleet.reset(BOX)
    run = fleet.fab("-H", BOX, "backup.all")
    assert run.returncode == 0, run.stdout + run.stderr
    return fleet


@pytest.fixture
def prod4(backed_up: Fleet) -> Fleet:
    backed_up.reset(BOX)
    return backed_up


def items(run: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    return {i["item"]: i for i in json.loads(run.stdout)["items"]}


def break_three_things(fleet: Fleet) -> None:
    said = fleet.sh(
        BOX, f"systemctl stop zachot-worker && chmod 644 {ENV} && systemctl stop redis-server"
    )
    assert said.returncode == 0, said.stderr


def test_a_healthy_box_is_all_ok_and_fast(prod4):
    started = time.monotonic()
    run = prod4.fab("-H", BOX, "checklist")
    wall = time.monotonic() - started
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [ln.split("\t") for ln in run.stdout.splitlines()[2:]]
    assert len(rows) >= 16 and all(r[0] == "✓" for r in rows), run.stdout
    doc = json.loads(prod4.fab("-H", BOX, "checklist", "--json").stdout)
    assert doc["ok"] is True and {i["state"] for i in doc["items"]} == {"ok"}
    code = next(i for i in doc["items"] if i["group"] == "code")
    assert "newest backup" in code["evidence"] and "recorded v1.2.0" in code["evidence"]
    print(f"\nchecklist on {BOX}: {doc['seconds']:.2f} s in the task, {wall:.2f} s for `fab`")
    assert doc["seconds"] < CHECKLIST_BUDGET


def test_worker_stopped_env_mode_broken_and_redis_down_each_fail_with_the_right_fix(prod4):
    break_three_things(prod4)
    run = prod4.fab("-H", BOX, "checklist", "--json")
    assert run.returncode == 1, run.stderr
    found = items(run)
    env = found[f"env file {ENV}"]
    assert env["state"] == "failed" and env["fix"] == ENV_PERMS
    assert "0644 zachot:zachot" in env["evidence"]
    redis = found["Redis PING (127.0.0.1:6379)"]
    assert redis["state"] == "failed" and redis["fix"] == RESTART_ALL
    worker = found["zachot-worker.service"]
    assert worker["state"] == "failed" and worker["evidence"].startswith("inactive")
    assert worker["fix"] == RESTART_ALL
    services = found["services running"]
    assert "zachot-worker.service (inactive" in services["evidence"]
    assert "redis-server.service (inactive" in services["evidence"]
    assert found["http://127.0.0.1:8000/health"]["evidence"] == "answered 503"
    # The table says the same, and the check changed nothing on the box.
    table = prod4.fab("-H", BOX, "checklist")
    assert table.returncode == 1 and f"✗\tfiles\tenv file {ENV}" in table.stdout
    assert table.stderr.count("\n") == 1 and table.stderr.startswith("error: prod4: ")
    said = prod4.sh(BOX, f"stat -c %a {ENV}; systemctl is-active zachot-worker redis-server").stdout
    assert said.split() == ["644", "inactive", "inactive"]


def test_guided_yes_brings_the_box_back_to_all_ok(prod4):
    break_three_things(prod4)
    run = prod4.fab("-H", BOX, "checklist", "--guided", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fix the env file's owner and mode" in run.stdout
    assert "start the services in order from Redis" in run.stdout
    final = run.stdout.split("recovery checklist")[-1].splitlines()
    assert final[0].startswith(" — 16 ✓, 0 ✗, 0 –")
    assert [ln[0] for ln in final[2:]] == ["✓"] * 16
    assert prod4.sh(BOX, f"stat -c '%a %U:%G' {ENV}").stdout.strip() == "600 zachot:zachot"
    doc = json.loads(prod4.fab("-H", BOX, "checklist", "--json").stdout)
    assert doc["ok"] is True


def test_code_follows_the_deploy_history_and_guided_rolls_back_to_it(prod4):
    release = prod4.fab("-H", BOX, "deploy.release", "--to=v1.1.0", "--yes")
    assert release.returncode == 0, release.stdout + release.stderr
    code = items(prod4.fab("-H", BOX, "checklist", "--json"))["code in /opt/zachot/repo"]
    assert code["state"] == "ok" and "last recorded deploy: " in code["evidence"]
    v110 = prod4.sh(BOX, HEAD).stdout.strip()
    assert len(v110) == 40, v110
    # Someone checks out v1.2.0 by hand, outside the deploy tasks.
    moved = prod4.sh(
        BOX,
        "cd /opt/zachot/repo && runuser -u zachot -- git -c advice.detachedHead=false "
        "checkout -q v1.2.0",
    )
    assert moved.returncode == 0, moved.stderr
    code = items(prod4.fab("-H", BOX, "checklist", "--json"))["code in /opt/zachot/repo"]
    assert code["state"] == "failed" and code["evidence"].startswith("deployed v1.2.0")
    assert code["fix"] == f"fab -H prod4 deploy.rollback --to {v110[:12]}"
    run = prod4.fab("-H", BOX, "checklist", "--guided", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert prod4.sh(BOX, HEAD).stdout.strip() == v110


def test_guided_refuses_without_yes_when_not_interactive(prod4):
    run = prod4.fab("-H", BOX, "checklist", "--guided")
    assert run.returncode == 2 and "add --yes" in run.stderr


def test_status_reads_hosts_in_parallel_and_names_a_dead_one(prod4, tmp_path):
    run = prod4.fab("-H", "prod4,prod5", "status", "--json")
    assert run.returncode == 0, run.stderr
    rows = {r["host"]: r for r in json.loads(run.stdout)}
    for name in ("prod4", "prod5"):
        assert rows[name]["up"] and rows[name]["health"] == "200", rows[name]
        assert set(rows[name]["services"].values()) == {"active"}
        assert rows[name]["redis"]["queues"]["default"]["queued"] >= 0
        assert rows[name]["ref"] == "v1.2.0"
    assert set(rows["prod4"]["backups_local"]) >= {"env", "units"}
    # A copy of the inventory that points prod5 at a closed port.
    text = prod4.inventory.read_text()
    wrong = text.replace("    prod5:\n      address: 10.231.7.2\n      port: 22\n",
                         "    prod5:\n      address: 10.231.7.2\n      port: 2\n")  # fmt: skip
    assert wrong != text
    bad = tmp_path / "inventory.yml"
    bad.write_text(wrong)
    misdirected = dataclasses.replace(prod4, inventory=bad)
    table = misdirected.fab("-H", "prod4,prod5", "status")
    assert table.returncode == 3, table.stdout + table.stderr
    lines = {ln.split("\t")[0]: ln.split("\t") for ln in table.stdout.splitlines()[2:]}
    assert lines["prod4"][1] == "all 3 active" and lines["prod4"][-1] == "ok"
    assert lines["prod5"][1] == "DOWN" and "connection refused" in lines["prod5"][-1]
    assert "prod5" in table.stderr
    dead = misdirected.fab("-H", "prod5", "checklist")
    assert dead.returncode == 4 and dead.stdout == ""
    assert dead.stderr.strip().splitlines() == [
        "error: prod5 (10.231.7.2:2): connection refused; is sshd running and is the port right?"
    ]
