"""The connection dies mid-transfer: the box's sshd session is killed (kill -9) while the
bytes flow, for backup.logs, a big backup.redis pull, restore.env, restore.redis and
backup.replicate. Afterwards nothing partial sits under a final name, locally or on the
server; `latest` is the previous good backup; the locks are free (released or visibly
stale); the server holds a whole old or a whole new file; and a retry succeeds.

The sandbox links are fast (400 MB/s), so the box's veth is rate-limited (tc tbf) while
a transfer is cut; restore.env's file is tiny, so its write is held on the box instead.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fabfile.core.crypto import open_backup_file

from . import inject
from .lab import ENV, VAULT, VAULT_ROOT, Lab, prod9_lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

FAULT = "connection dies mid-transfer"
BIG_LOG = "/opt/zachot/logs/big.log"
STARTED = 5 * 1024 * 1024  # bytes through before the cut: the transfer is under way
FILL_REDIS = (
    "import os, redis\n"
    "pipe = redis.Redis().pipeline(transaction=False)\n"
    "for i in range(150):\n"
    "    pipe.set(f'fault:blob:{i}', os.urandom(1 << 20))\n"
    "pipe.execute()\n"
)
DUMP = "/var/lib/redis/dump.rdb"


def cut(
    lab: Lab,
    args: tuple[str, ...],
    under_way: Callable[[], object],
    *,
    box: str = "",
    then: Callable[[object], object] = lambda _found: None,
):
    """Run fab, and once the transfer is under way kill the sshd session serving it
    (then, optionally, something more on the box: `then` gets what under_way found)."""
    process = lab.started(*args)
    try:
        found = inject.wait_until(lambda: process.poll() is not None or under_way(), "transfer")
        if process.poll() is not None:
            pytest.fail(f"{args} ended before it could be cut: {process.communicate()}")
        inject.kill_sessions(lab.fleet, box or lab.box, process.pid)
        then(found)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_failed_clearly(run, *expected: str) -> None:
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 1, run.stdout + run.stderr
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    assert all(e in errors[0] for e in expected), errors[0]


def assert_store_as_before(lab: Lab, kind: str, previous: str) -> None:
    assert [r.id for r in lab.store.list(lab.box, kind)] == [previous]
    assert lab.store.latest(lab.box, kind).id == previous
    assert inject.leftovers(lab.store.root) == []
    assert inject.store_lock_free(lab.store.root)


def nothing_left_running(lab: Lab, box: str = "") -> None:
    """The transport's agent (and tar under it) died with the connection on the box."""
    inject.wait_until(
        lambda: lab.fleet.exec(box or lab.box, ["pgrep", "-f", "ZACHOT-AGENT"]).returncode == 1,
        "the agent to exit on the box",
    )


def fill_redis(lab: Lab) -> None:
    said = lab.fleet.exec(lab.box, ["/opt/zachot/envs/prod/bin/python", "-c", FILL_REDIS])
    assert said.returncode == 0, said.stderr


def found_on(lab: Lab, box: str, script: str) -> str:
    """What a find on the box prints (nothing while the directory does not exist yet)."""
    return lab.fleet.sh(box, script).stdout.strip()


def make_big_log(lab: Lab) -> str:
    lab.sh(f"head -c 200M /dev/urandom > {BIG_LOG} && chown zachot:zachot {BIG_LOG}")
    return lab.sha256(BIG_LOG)


def archived_sha256(lab: Lab, member: str) -> str:
    """sha256 of one file in the newest logs archive of the store."""
    ref = lab.store.latest(lab.box, "logs")
    # Stored age-encrypted: decrypted in memory, then read by tar from stdin.
    archive = open_backup_file(lab.store, ref, ref.manifest.meta["archive"], lab.host())
    tar = subprocess.run(["tar", "--zstd", "-xOf", "-", member], input=archive,
                         capture_output=True, check=True)  # fmt: skip
    return hashlib.sha256(tar.stdout).hexdigest()


def local_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def backup_id(lab: Lab, *args: str) -> str:
    run = lab.fab(*args)
    assert run.returncode == 0, run.stdout + run.stderr
    return lab.store.latest(lab.box, args[0].removeprefix("backup.")).id


@pytest.mark.fault(FAULT, checked="backup.logs: latest kept, no partial, lock free, retry lands")
def test_backup_logs_cut_mid_stream(prod9):
    previous = backup_id(prod9, "backup.logs")
    big = make_big_log(prod9)
    logs_dir = prod9.store.root / prod9.box / "logs"
    with inject.slow_link(prod9.fleet, prod9.box):
        run = cut(prod9, ("backup.logs",), lambda: inject.part_file(logs_dir, STARTED))
    assert_failed_clearly(run, "logs:", "connection lost")
    assert_store_as_before(prod9, "logs", previous)
    nothing_left_running(prod9)

    assert backup_id(prod9, "backup.logs") != previous
    assert archived_sha256(prod9, "big.log") == big


@pytest.mark.fault(FAULT, checked="a 3 s link outage mid-pull: the pull goes on and lands intact")
def test_backup_logs_survives_a_short_link_outage(prod9):
    big = make_big_log(prod9)
    logs_dir = prod9.store.root / prod9.box / "logs"
    process = prod9.started("backup.logs")
    try:
        with inject.slow_link(prod9.fleet, prod9.box):
            inject.wait_until(lambda: inject.part_file(logs_dir, STARTED), "the transfer")
            with inject.box_link_down(prod9.fleet, prod9.box):
                time.sleep(3)
            stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stdout + stderr
    assert archived_sha256(prod9, "big.log") == big
    assert inject.leftovers(prod9.store.root) == [] and prod9.reaches_repo()


@pytest.mark.fault(FAULT, checked="backup.redis: latest kept, no plaintext left, retry verifies")
def test_backup_redis_cut_mid_pull(prod9):
    previous = backup_id(prod9, "backup.redis", "--yes")
    fill_redis(prod9)
    redis_dir = prod9.store.root / prod9.box / "redis"
    with inject.slow_link(prod9.fleet, prod9.box):
        run = cut(prod9, ("backup.redis", "--yes"), lambda: inject.part_file(redis_dir, STARTED))
    assert_failed_clearly(run, "redis:", "connection lost")
    assert_store_as_before(prod9, "redis", previous)  # no .plain- scratch with the data either
    nothing_left_running(prod9)

    newest = backup_id(prod9, "backup.redis", "--yes")
    assert newest != previous
    assert prod9.store.latest(prod9.box, "redis").size > 150 * 1024 * 1024
    assert prod9.fab("backup.verify", "--kind", "redis").returncode == 0


@pytest.mark.fault(FAULT, checked="restore.env: whole old or whole new env, run lock free, retry")
@pytest.mark.parametrize("writer", ["finishes", "dies too"])
def test_restore_env_cut_mid_push(prod9, writer):
    assert prod9.fab("backup.env").returncode == 0
    backed_up = prod9.sha256(ENV)
    prod9.sh(f"echo FAULT_EXTRA=1 >> {ENV}")
    current = prod9.sha256(ENV)
    with inject.held_op(prod9.fleet, prod9.box, "write", ENV):
        # "dies too": the box loses the writer as well as the link (as in a crash).
        kill_writer = writer == "dies too"
        run = cut(prod9, ("restore.env", "--yes"),
                  lambda: inject.held_writer(prod9.fleet, prod9.box),
                  then=lambda pid: kill_writer and prod9.sh(f"kill -9 {pid}"))  # fmt: skip
        nothing_left_running(prod9)
    assert_failed_clearly(run, "step 2 'put env backup", "connection lost")
    assert prod9.sha256(ENV) in {backed_up, current}  # never a truncated file
    if writer == "dies too":
        assert prod9.sha256(ENV) == current
    assert prod9.sh("ls -A /opt/zachot/envs/prod/etc").count("zachot-part") == 0
    assert prod9.sh(f"stat -c '%a %U:%G' {ENV}").strip() == "600 zachot:zachot"
    assert inject.run_lock_free(prod9.fleet, prod9.box)

    again = prod9.fab("restore.env", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert prod9.sha256(ENV) == backed_up and prod9.healthy()


@pytest.mark.fault(FAULT, checked="restore.redis: no truncated dump, old one kept, retry works")
def test_restore_redis_cut_mid_push(prod9):
    fill_redis(prod9)
    assert prod9.fab("backup.redis", "--yes").returncode == 0
    backed_up = prod9.store.latest(prod9.box, "redis").manifest.file("dump.rdb.age").sha256
    prod9.sh("redis-cli SET fault:marker after-backup >/dev/null && redis-cli SAVE >/dev/null")
    part = f"find /var/lib/redis -name '.dump.rdb.zachot-part-*' -size +{STARTED // 1024}k"
    with inject.slow_link(prod9.fleet, prod9.box):
        run = cut(prod9, ("restore.redis", "--from", "latest", "--yes"),
                  lambda: found_on(prod9, prod9.box, part))  # fmt: skip
    nothing_left_running(prod9)
    assert_failed_clearly(run, "connection lost")
    # Under its own name: nothing, or the whole new dump; the old one kept whole beside it
    # (Redis rewrote it when the restore stopped it, so it is checked, not compared).
    assert prod9.sha256(DUMP) in {None, backed_up}
    assert "RDB looks OK" in prod9.sh("redis-check-rdb /var/lib/redis/dump.rdb.pre-restore.*")
    assert prod9.sh("ls -A /var/lib/redis").count("zachot-part") == 0
    assert inject.run_lock_free(prod9.fleet, prod9.box)

    again = prod9.fab("restore.redis", "--from", "latest", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert prod9.sha256(DUMP) == backed_up and prod9.healthy()
    assert prod9.sh("redis-cli EXISTS fault:blob:149").strip() == "1"


@pytest.mark.fault(FAULT, checked="backup.replicate: vault copy stays incomplete, resume verifies")
def test_backup_replicate_cut_mid_upload(prod9):
    make_big_log(prod9)
    logs_id = backup_id(prod9, "backup.logs")
    prod9.configure(offsite=True)
    remote = f"{VAULT_ROOT}/{prod9.offsite_dir}/{prod9.box}/logs/{logs_id}"
    part = f"find {remote} -name '.logs.tar.zst.age.part-*' -size +{STARTED // 1024}k"
    run = cut(prod9, ("backup.replicate",), lambda: found_on(prod9, VAULT, part), box=VAULT)
    assert_failed_clearly(run, "not replicated", "logs", "connection lost")
    there = prod9.sh(f"ls -A {remote}", box=VAULT).split()
    assert "manifest.json" not in there and "logs.tar.zst.age" not in there, there
    assert_store_as_before(prod9, "logs", logs_id)

    again = prod9.fab("backup.replicate")
    assert again.returncode == 0, again.stdout + again.stderr
    # Logs are stored age-encrypted: the vault holds the .age archive.
    local = prod9.store.file_path(prod9.store.latest(prod9.box, "logs"), "logs.tar.zst.age")
    assert prod9.sha256(f"{remote}/logs.tar.zst.age", box=VAULT) == local_sha256(local)
    assert sorted(prod9.sh(f"ls -A {remote}", box=VAULT).split()) == [
        "logs.tar.zst.age",
        "manifest.json",
    ]
    assert prod9.fab("backup.verify", "--kind", "logs").returncode == 0
