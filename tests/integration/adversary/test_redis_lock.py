"""Holes 6 and 8 of issue 10: Redis's own idea of its paths, and the host run lock.

The service user reaches Redis with redis-cli (no password on the box; protected configs are
off, as on Redis <= 6) and /run/lock (world-writable). Each attack then meets a real task.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from .hostile import (
    CANARY,
    assert_no_secret,
    attacker,
    canary_state,
    env_secrets,
    one_line_error,
    prod12_lab,  # noqa: F401
    setup_canaries,
)

pytestmark = pytest.mark.integration

VICTIM_DIR = "/srv/adv-redis"  # root-owned, outside redis.data_dir
VICTIM = f"{VICTIM_DIR}/victim.rdb"
OLD_LOCK = "/run/lock/zachot-ops.lock"
LOCK_PARENT = "/run/zachot-ops"


def _unprotect_redis_config(lab) -> None:
    """As on Redis <= 6 (or protected configs allowed): any local client may move dir."""
    lab.sh(
        "echo 'enable-protected-configs yes' >> /etc/redis/redis.conf && "
        "systemctl restart redis-server"
    )


def _victim(lab) -> str:
    lab.sh(f"install -d -m 0755 {VICTIM_DIR}; echo root-data > {VICTIM}; chmod 0600 {VICTIM}")
    return lab.sh(f"stat -c '%U %a %s' {VICTIM}; sha256sum {VICTIM}")


@pytest.mark.attack(
    "redis config paths", checked="restore.redis: CONFIG SET dir outside data_dir refused"
)
def test_restore_redis_refuses_a_dir_outside_data_dir(prod12):
    setup_canaries(prod12)
    before = _victim(prod12)
    _unprotect_redis_config(prod12)
    attacker(
        prod12,
        f"redis-cli CONFIG SET dir {VICTIM_DIR} | grep -qx OK && "
        "redis-cli CONFIG SET dbfilename victim.rdb | grep -qx OK",
    )
    done = prod12.fab("restore.redis", "--yes", timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line_error(done.stderr)
    assert f"says dir={VICTIM_DIR}" in line and "only moves files under redis.data_dir" in line
    assert prod12.sh(f"stat -c '%U %a %s' {VICTIM}; sha256sum {VICTIM}") == before
    assert prod12.sh(f"ls {VICTIM_DIR}").split() == ["victim.rdb"]  # nothing set aside
    assert prod12.active()[0] == "active"  # refused before Redis was stopped


@pytest.mark.attack("redis config paths", checked="backup.redis: RDB read outside data_dir refused")
def test_backup_redis_refuses_a_dir_outside_data_dir(prod12):
    secret_canary = setup_canaries(prod12)
    _unprotect_redis_config(prod12)
    # Redis has a private /tmp; root reading "/tmp/dump.rdb" on the host gets this link.
    attacker(prod12, "ln -s /root/adversary-secret /tmp/dump.rdb")
    attacker(prod12, "redis-cli CONFIG SET dir /tmp | grep -qx OK")
    done = prod12.fab("backup.redis", "--yes", timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # a failed backup step
    line = one_line_error(done.stderr)
    assert "says dir=/tmp" in line and "redis.data_dir (/var/lib/redis)" in line
    assert prod12.store.latest("prod12", "redis") is None
    assert_no_secret([done.stdout, done.stderr], [secret_canary, *env_secrets(prod12)])


def _backup_env(lab) -> None:
    done = lab.fab("backup.env")
    assert done.returncode == 0, done.stdout + done.stderr


def _holder(host: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"host": host, "pid": 1, "since": now, "purpose": "attacker"})


@pytest.mark.attack(
    "host run lock", checked="a fresh lock planted in /run/lock does not block restore.env"
)
def test_lock_planted_in_run_lock_does_not_block_recovery(prod12):
    setup_canaries(prod12)
    _backup_env(prod12)
    attacker(
        prod12,
        f"mkdir {OLD_LOCK} && printf '%s' '{_holder('ops-laptop')}' > {OLD_LOCK}/holder; "
        f"mkdir {LOCK_PARENT} 2>/dev/null; true",
    )
    assert prod12.sh(f"test -e {LOCK_PARENT} && stat -c %U {LOCK_PARENT} || echo none") in (
        "none\n",
        "root\n",
    )
    done = prod12.fab("restore.env", "--yes", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert prod12.sh(f"stat -c '%U %a %F' {LOCK_PARENT}") == "root 700 directory\n"
    assert prod12.sh(f"ls -A {LOCK_PARENT}") == ""  # released


@pytest.mark.attack(
    "host run lock", checked="a lock dir not root-owned or a link: refused, nothing written"
)
def test_lock_dir_not_root_owned_is_refused_and_never_followed(prod12):
    before = (setup_canaries(prod12), canary_state(prod12))[1]
    _backup_env(prod12)
    target = "/root/adv-lock-target"
    # As if an earlier compromise or a bad tmpfiles rule left it to the service user.
    prod12.sh(f"install -d -m 0755 -o zachot -g zachot {LOCK_PARENT}")
    attacker(prod12, f"ln -s {target} {LOCK_PARENT}/lock; ln -s {CANARY} {LOCK_PARENT}/holder")
    done = prod12.fab("restore.env", "--yes", timeout=300)
    assert done.returncode != 0, done.stdout + done.stderr
    line = one_line_error(done.stderr)
    assert f"{LOCK_PARENT} is owned by zachot; it must be a root-owned directory" in line
    assert prod12.sh(f"test -e {target} && echo made || echo none") == "none\n"
    assert canary_state(prod12) == before

    # A link in place of the directory itself.
    prod12.sh(f"rm -rf {LOCK_PARENT}; install -d -o zachot /tmp/adv-lockdir")
    prod12.sh(f"ln -s /tmp/adv-lockdir {LOCK_PARENT}")
    done = prod12.fab("restore.env", "--yes", timeout=300)
    assert done.returncode != 0
    assert f"{LOCK_PARENT} is a symbolic link" in one_line_error(done.stderr)
    assert prod12.sh("ls -A /tmp/adv-lockdir") == ""
