"""Backups and the single-file recoveries against the sandbox's prod box."""

from __future__ import annotations

import json

import pytest

from fabfile.core.crypto import find_record, open_backup_file
from fabfile.core.inventory import load_inventory
from fabfile.core.store import Store

pytestmark = pytest.mark.integration

ENV = "/opt/zachot/envs/prod/etc/zachot.env"
API_UNIT = "/etc/systemd/system/zachot-api.service"


@pytest.fixture
def prod(fleet):
    """A fresh prod for every test: restores stop services and change files."""
    fleet.reset("prod")
    return fleet


def inventory_host(fleet, name: str = "prod"):
    return load_inventory(fleet.inventory).host(name)


def store(fleet) -> Store:
    return Store(inventory_host(fleet).store.path)


def box_file(fleet, path: str) -> tuple[bytes, str]:
    data = fleet.exec("prod", ["cat", path]).stdout.encode()
    meta = fleet.exec("prod", ["stat", "-c", "%a %U:%G", path]).stdout.strip()
    return data, meta


def secret_values(fleet) -> list[str]:
    text = fleet.exec("prod", ["cat", ENV]).stdout
    return [
        line.split("=", 1)[1] for line in text.splitlines() if "SECRET" in line or "DSN" in line
    ]


def active(fleet) -> list[str]:
    units = ["redis-server", "zachot-worker", "zachot-api"]
    return fleet.exec("prod", ["systemctl", "is-active", *units]).stdout.split()


def box_digests(fleet, *paths: str) -> str:
    return fleet.exec("prod", ["sh", "-c", 'sha256sum "$@" 2>&1; ls -la /opt/zachot/envs/prod/etc',
                               "sh", *paths]).stdout  # fmt: skip


def test_backup_round_trips_byte_for_byte_and_never_prints_secrets(prod):
    run = prod.fab("-H", "prod", "backup.all", "--logs")
    assert run.returncode == 0, run.stderr
    listing = prod.fab("backup.list", "--json")
    s = store(prod)
    env = s.latest("prod", "env")
    record = find_record(env, "zachot.env")
    data, meta = box_file(prod, ENV)
    assert open_backup_file(s, env, "zachot.env", inventory_host(prod)) == data
    assert f"{record.mode:o} {record.owner}:{record.group}" == meta == "600 zachot:zachot"
    # Encrypted at rest: no secret in the stored bytes or in the manifest.
    assert record.name == "zachot.env.age" and record.ciphertext_sha256
    holder = s.file_path(env, record.name)
    stored = holder.read_bytes() + (env.path / "manifest.json").read_bytes()
    units = s.latest("prod", "units")
    api_unit = open_backup_file(s, units, "zachot-api.service", inventory_host(prod))
    assert api_unit == box_file(prod, API_UNIT)[0]
    assert find_record(units, "zachot-api.service").name.endswith(".age")  # every kind
    assert env.manifest.meta["deployed"]["describe"] == "v1.2.0"
    for secret in secret_values(prod):
        assert secret.encode() not in stored
        for text in (run.stdout, run.stderr, listing.stdout):
            assert secret not in text


def test_restore_env_after_deletion_brings_the_api_back(prod):
    assert prod.fab("-H", "prod", "backup.env").returncode == 0
    original = box_file(prod, ENV)
    prod.exec("prod", ["rm", ENV])
    prod.exec("prod", ["systemctl", "restart", "zachot-api"])
    run = prod.fab("-H", "prod", "restore.env", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert box_file(prod, ENV) == original
    assert active(prod) == ["active"] * 3
    assert prod.job_processed("prod")
    assert "total" in run.stdout and "runbook: 2-5 min" in run.stdout
    for secret in secret_values(prod):
        assert secret not in run.stdout + run.stderr


def test_restore_units_repairs_a_corrupt_unit_and_keeps_the_old_one(prod):
    assert prod.fab("-H", "prod", "backup.units").returncode == 0
    good = box_file(prod, API_UNIT)
    prod.sh("prod", f"printf 'garbage\\n' > {API_UNIT}")
    run = prod.fab("-H", "prod", "restore.units", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert box_file(prod, API_UNIT) == good
    kept = prod.sh("prod", f"cat {API_UNIT}.pre-restore.*").stdout
    assert kept == "garbage\n"
    assert active(prod) == ["active"] * 3


def test_restore_redis_after_corruption_gives_a_working_queue(prod):
    prod.exec("prod", ["systemctl", "stop", "zachot-worker", "redis-server"])
    prod.sh("prod", "head -c 4096 /dev/urandom > /var/lib/redis/dump.rdb")
    prod.exec("prod", ["systemctl", "start", "redis-server"])
    run = prod.fab("-H", "prod", "restore.redis", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "the tasks that were queued are lost" in run.stdout
    assert active(prod) == ["active"] * 3
    assert prod.job_processed("prod")


def test_rerun_after_success_skips_every_finished_step(prod):
    assert prod.fab("-H", "prod", "backup.env").returncode == 0
    first = prod.fab("-H", "prod", "restore.env", "--yes")
    assert first.returncode == 0, first.stderr
    again = prod.fab("-H", "prod", "restore.env", "--yes")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already done, skipped") >= 1


def test_dry_run_changes_nothing(prod):
    assert prod.fab("-H", "prod", "backup.all").returncode == 0
    prod.sh("prod", f"printf 'EXTRA_KEY=1\\n' >> {ENV}")
    before = box_digests(prod, ENV, API_UNIT, "/var/lib/redis/dump.rdb")
    for task in ("restore.env", "restore.units", "restore.redis"):
        run = prod.fab("-H", "prod", task, "--dry-run")
        assert run.returncode == 0, run.stderr
        assert "dry run, nothing changes" in run.stdout
    assert box_digests(prod, ENV, API_UNIT, "/var/lib/redis/dump.rdb") == before
    env_plan = prod.fab("-H", "prod", "restore.env", "--dry-run").stdout
    assert "remove EXTRA_KEY" in env_plan


def test_restore_without_yes_refuses_in_a_non_interactive_run(prod):
    assert prod.fab("-H", "prod", "backup.env").returncode == 0
    run = prod.fab("-H", "prod", "restore.env")
    assert run.returncode == 2
    assert "refusing without --yes" in run.stderr


def test_two_restores_at_once_one_is_refused_naming_the_holder(prod):
    assert prod.fab("-H", "prod", "backup.env").returncode == 0
    holder = json.dumps({"host": "other-laptop", "pid": 4242, "since": "2099-01-01T00:00:00Z",
                         "purpose": "restore.env"})  # fmt: skip
    prod.sh(
        "prod",
        f"install -d -m 0700 /run/zachot-ops/lock && echo '{holder}' > /run/zachot-ops/lock/holder",
    )
    run = prod.fab("-H", "prod", "restore.env", "--yes")
    assert run.returncode == 75
    assert "other-laptop pid 4242" in run.stderr and "restore.unlock" in run.stderr
    assert prod.fab("-H", "prod", "restore.unlock", "--yes").returncode == 0
    assert prod.fab("-H", "prod", "restore.env", "--yes").returncode == 0


def test_restore_redis_from_a_dump_needs_yes_and_brings_the_keys_back(prod):
    prod.exec("prod", ["redis-cli", "SET", "zachot:marker", "kept"])
    assert prod.fab("-H", "prod", "backup.redis", "--yes").returncode == 0
    prod.exec("prod", ["redis-cli", "DEL", "zachot:marker"])
    refused = prod.fab("-H", "prod", "restore.redis", "--from", "latest")
    assert refused.returncode == 2 and "run twice" in refused.stderr
    run = prod.fab("-H", "prod", "restore.redis", "--from", "latest", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert prod.exec("prod", ["redis-cli", "GET", "zachot:marker"]).stdout.strip() == "kept"
    assert active(prod) == ["active"] * 3
