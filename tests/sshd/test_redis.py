"""Redis through an SSH tunnel, the Dramatiq report and backup.redis, against real
redis-server and sshd processes on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from fabfile.core import dramatiq_queues, redis_access
from fabfile.core.backups import redis as redis_backup
from fabfile.core.backups.planner import BackupFailed, back_up, context_for
from fabfile.core.model import Host, Layout, RedisSettings, StoreSettings
from fabfile.core.store import Store
from fabfile.core.transport import Transport
from tests.sshd.helpers import write_inventory

pytestmark = pytest.mark.sshd

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    dir: Path
    process: subprocess.Popen

    def client(self) -> redis.Redis:
        """Direct, for setting up and checking; the code under test uses the tunnel."""
        return redis.Redis(port=self.port)


def start_redis(dir: Path, *extra: str, password: str | None = None) -> RedisServer:
    dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(dir),
            "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
            "--logfile", str(dir / "redis.log"), *extra]  # fmt: skip
    proc = subprocess.Popen(args)
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis(port=port, password=password, socket_timeout=1).ping():
                return RedisServer(port, dir, proc)
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"redis-server did not start: {args}") from None
            time.sleep(0.05)


def stop_redis(server: RedisServer) -> None:
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.fail("the sshd tier needs redis-server (apt-get install redis-server)")
    server = start_redis(tmp_path / "redis")
    yield server
    stop_redis(server)


@pytest.fixture
def host(sshd, redis_server, tmp_path) -> Host:
    base = tmp_path / "server"
    base.mkdir()  # the service's root: its user's home, where the deployed ref is read
    return replace(
        sshd.host,
        # The sshd tier runs as root with no zachot account (as make_server's layout says).
        layout=Layout(root=str(base), repo_dir=str(base / "repo"), backup_dir=str(base / "bk"),
                      service_user="root"),
        redis=RedisSettings(data_dir=str(redis_server.dir),
                            url=f"redis://127.0.0.1:{redis_server.port}/0"),
        store=StoreSettings(path=tmp_path / "store"),
    )  # fmt: skip


def fill_queues(client: redis.Redis) -> None:
    """What a Dramatiq broker leaves in Redis, written key by key."""
    now_ms = int(time.time() * 1000)
    body = json.dumps({"queue_name": "default", "actor_name": "grade", "args": [1]})
    live, dead = str(uuid.uuid4()), str(uuid.uuid4())
    for mid in ("m1", "m2", "m3"):
        client.rpush("dramatiq:default", mid)
        client.hset("dramatiq:default.msgs", mid, body)
    client.rpush("dramatiq:default.DQ", "d1")
    client.hset("dramatiq:default.DQ.msgs", "d1", body)
    client.zadd("dramatiq:default.XQ", {"x1": now_ms - 1000})
    client.hset("dramatiq:default.XQ.msgs", "x1", body)
    client.sadd(f"dramatiq:__acks__.{live}.default", "a1", "a2")
    client.hset("dramatiq:default.msgs", mapping={"a1": body, "a2": body})
    client.sadd(f"dramatiq:__acks__.{live}.x.default", "other-queue")  # not "default"
    client.zadd("dramatiq:__heartbeats__", {live: now_ms, dead: now_ms - 120_000})


def test_tunnel_reaches_redis_over_the_one_ssh_connection(sshd, host, redis_server):
    with Transport(host) as transport:
        before = set(sshd.sessions())
        with redis_access.open_redis(transport) as client:
            client.set("through", "tunnel")
            assert set(sshd.sessions()) - before == set()  # no second SSH connection
            server = redis_access.server(client, fallback_dir="/nowhere")
        assert transport.run(["true"]).ok  # the connection outlives the tunnel
    assert redis_server.client().get("through") == b"tunnel"
    assert (server.dir, server.dbfilename) == (str(redis_server.dir), "dump.rdb")
    assert server.config_readable and not server.appendonly
    assert server.rdb_path == str(redis_server.dir / "dump.rdb")
    assert server.dbsize == 1


def test_queue_report_counts_the_real_keys(host, redis_server):
    fill_queues(redis_server.client())
    with Transport(host) as transport, redis_access.open_redis(transport) as client:
        report = dramatiq_queues.read_report(client, "dramatiq", ("default",))
        runbook_key = client.llen("dramatiq:queue:default")
    assert report.queues == (
        dramatiq_queues.QueueCounts("default", queued=3, delayed=1, in_flight=2, dead=1),
    )
    assert (report.workers_alive, report.workers_known) == (1, 2)
    assert runbook_key == 0  # what the runbook's check always sees


def backup(host: Host) -> str:
    return back_up(context_for(host, datetime.now(UTC)), ["redis"])


def load_dump(path: Path, tmp: Path) -> redis.Redis:
    """Start a second Redis on a copy of the dump: the proof it is a valid RDB."""
    (tmp).mkdir()
    shutil.copy(path, tmp / "dump.rdb")
    return start_redis(tmp)


def test_backup_takes_a_fresh_snapshot_and_records_the_queues(host, redis_server, tmp_path):
    client = redis_server.client()
    fill_queues(client)
    client.set("generation:1", "x" * 1000)
    assert not (redis_server.dir / "dump.rdb").exists()  # --save '': only BGSAVE writes it
    detail = backup(host)
    store = Store(host.store.path)
    ref = store.latest("local", "redis")
    stored = store.file_path(ref, "dump.rdb")
    written = redis_server.dir / "dump.rdb"
    assert stored.read_bytes() == written.read_bytes()
    assert stored.read_bytes().startswith(b"REDIS")
    meta = ref.manifest.meta
    assert meta["dramatiq"]["queues"]["default"] == {
        "queued": 3, "delayed": 1, "in_flight": 2, "dead": 1,
    }  # fmt: skip
    assert meta["dramatiq"]["workers_alive"] == 1
    assert (meta["redis_version"], meta["dbsize"], meta["appendonly"]) == (
        client.info()["redis_version"], client.dbsize(), False,
    )  # fmt: skip
    assert meta["rdb_path"] == str(written)
    assert "actor_name" not in (ref.path / "manifest.json").read_text()  # counts, no bodies
    assert detail.endswith("; 10 keys, 6 Dramatiq messages pending")  # 3 + 1 delayed + 2 in flight

    # A second backup right away (same LASTSAVE second) still waits for a save of its own.
    client.set("generation:2", "y")
    backup(host)
    newer = store.latest("local", "redis")
    assert newer.id != ref.id
    assert store.file_path(newer, "dump.rdb").read_bytes() == written.read_bytes()
    copy = load_dump(store.file_path(newer, "dump.rdb"), tmp_path / "loaded")
    try:
        assert copy.client().get("generation:2") == b"y"
        assert copy.client().llen("dramatiq:default") == 3
    finally:
        stop_redis(copy)


def test_snapshot_waits_out_a_save_already_running(host, redis_server):
    client = redis_server.client()
    client.mset({f"k{i}": i for i in range(10)})
    client.config_set("rdb-key-save-delay", 50_000)  # 0.5 s per save of 10 keys
    client.bgsave()
    saves = client.info("persistence")["rdb_saves"]
    with Transport(host) as transport, redis_access.open_redis(transport) as tunneled:
        after = redis_backup.take_snapshot(tunneled, "Redis on local", timeout=30)
    assert after.saves == saves + 1  # the running one, then ours
    assert not client.info("persistence")["rdb_bgsave_in_progress"]


def test_redis_down_is_one_clear_line_and_no_backup(host):
    port = free_port()
    down = replace(host, redis=replace(host.redis, url=f"redis://127.0.0.1:{port}/0"))
    with pytest.raises(BackupFailed) as failed:
        backup(down)
    assert failed.value.message == (
        f"redis: Redis on local (127.0.0.1:{port} via SSH) does not answer PING: "
        "connection refused on the server; is redis-server.service running?"
    )
    store_dir = host.store.path / "local" / "redis"
    assert Store(host.store.path).latest("local", "redis") is None
    assert not store_dir.exists() or not list(store_dir.iterdir())


def test_wait_until_up_sees_redis_come_back(host, redis_server):
    stop_redis(redis_server)
    with Transport(host) as transport:
        with pytest.raises(redis_access.RedisUnavailable, match=r"waited 0\.5 s"):
            redis_access.wait_until_up(transport, timeout=0.5, interval=0.1)
        args = redis_server.process.args
        redis_server.process = subprocess.Popen(args)
        version = redis_access.wait_until_up(transport, timeout=10, interval=0.1)
    assert version == redis.Redis(port=redis_server.port).info()["redis_version"]


def test_password_from_the_url_is_used_and_never_shown(host, tmp_path):
    secret = "canary-redis-pass-93f1"
    locked = start_redis(tmp_path / "locked", "--requirepass", secret, password=secret)
    try:
        url = f"redis://127.0.0.1:{locked.port}/0"
        without = replace(host, redis=replace(host.redis, url=url))
        with (
            Transport(without) as transport,
            pytest.raises(redis_access.RedisUnavailable) as no,
            redis_access.open_redis(transport),
        ):
            pass
        assert no.value.message == (
            f"Redis on local (127.0.0.1:{locked.port} via SSH): authentication failed; "
            "give the password in redis.url (redis://:PASSWORD@host)"
        )
        url = f"redis://:{secret}@127.0.0.1:{locked.port}/0"
        with_password = replace(host, redis=replace(host.redis, url=url))
        with Transport(with_password) as transport, redis_access.open_redis(transport) as client:
            assert client.ping()
        plan = redis_backup.step(context_for(with_password, datetime.now(UTC)))
        assert secret not in " ".join(plan.actions)
    finally:
        stop_redis(locked)


def fab(args: list[str], inventory: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZACHOT_INVENTORY": str(inventory)}
    return subprocess.run(
        [Path(sys.executable).parent / "fab", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_cli_refuses_without_yes_then_backs_up_with_it(host, redis_server, tmp_path):
    inventory = write_inventory(host, tmp_path / "inv.yml")
    fill_queues(redis_server.client())
    refused = fab(["-H", "local", "backup.redis"], inventory)
    assert refused.returncode == 2, refused.stderr
    assert "runbook does not recommend" in refused.stderr
    assert "refusing without --yes in a non-interactive run" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 2  # the warning and one error line
    assert Store(host.store.path).latest("local", "redis") is None
    assert not (redis_server.dir / "dump.rdb").exists()  # nothing was even asked of Redis

    plan = fab(["-H", "local", "backup.redis", "--dry-run"], inventory)
    assert plan.returncode == 0, plan.stderr
    assert "would BGSAVE" in plan.stdout and "dramatiq:default" in plan.stdout
    assert Store(host.store.path).latest("local", "redis") is None

    done = fab(["-H", "local", "backup.redis", "--yes"], inventory)
    assert done.returncode == 0, done.stderr
    assert "Dramatiq queues (namespace dramatiq): 1 live workers" in done.stdout
    assert "default\t3\t1\t2\t1" in done.stdout
    ref = Store(host.store.path).latest("local", "redis")
    stored = Store(host.store.path).file_path(ref, "dump.rdb")
    assert stored.read_bytes() == (redis_server.dir / "dump.rdb").read_bytes()
