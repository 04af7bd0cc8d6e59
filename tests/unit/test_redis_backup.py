"""redis.url parsing and the BGSAVE wait, without a Redis."""

from __future__ import annotations

import pytest
import redis

from fabfile.core import secrets
from fabfile.core.backups.redis import SaveState, SnapshotFailed, save_done, take_snapshot
from fabfile.core.errors import UsageError
from fabfile.core.redis_access import RedisTarget, parse_url

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://127.0.0.1:6379/0", RedisTarget("127.0.0.1", 6379, 0)),
        ("redis://localhost", RedisTarget("localhost", 6379, 0)),
        ("redis://10.0.0.5:6380/3", RedisTarget("10.0.0.5", 6380, 3)),
        ("redis://127.0.0.1:6379?db=2", RedisTarget("127.0.0.1", 6379, 2)),
        ("rediss://[::1]:6390/1", RedisTarget("::1", 6390, 1, tls=True)),
    ],
)
def test_parse_url(url, target):
    assert parse_url(url) == target


def test_password_is_parsed_and_masked_from_then_on():
    target = parse_url("redis://app:p%40ss-canary-41@127.0.0.1:6379/0")
    assert (target.username, target.password) == ("app", "p@ss-canary-41")
    assert "p@ss-canary-41" not in secrets.mask("auth p@ss-canary-41 failed")


@pytest.mark.parametrize("url", ["unix:///run/redis/redis.sock", "redis://h:port/0", "redis://h/x"])
def test_unusable_urls_are_usage_errors(url):
    with pytest.raises(UsageError, match=r"redis\.url"):
        parse_url(url)


def state(in_progress=False, last_save=100, saves=4, status="ok") -> SaveState:
    return SaveState(in_progress, last_save, saves, status)


def test_save_state_from_info_persistence():
    info = {"rdb_bgsave_in_progress": 1, "rdb_last_save_time": 1795534511, "rdb_saves": 3,
            "rdb_last_bgsave_status": "err", "aof_enabled": 0}  # fmt: skip
    assert SaveState.from_info(info) == SaveState(True, 1795534511, 3, "err")
    assert SaveState.from_info({"rdb_last_save_time": 5}).saves is None  # Redis < 7


def test_save_done():
    before = state()
    assert not save_done(before, state(in_progress=True, saves=5), seen_running=True)
    assert not save_done(before, state(), seen_running=False)
    # rdb_saves tells even when LASTSAVE stays in the same second
    assert save_done(before, state(saves=5), seen_running=False)
    assert save_done(before, state(saves=None, last_save=101), seen_running=False)
    assert save_done(before, state(), seen_running=True)


class ScriptedRedis:
    """Plays back INFO persistence replies; records BGSAVE calls."""

    def __init__(self, infos, *, busy_first=False):
        self.infos, self.busy_first, self.bgsaves = list(infos), busy_first, 0

    def info(self, section):
        assert section == "persistence"
        return self.infos.pop(0) if len(self.infos) > 1 else self.infos[0]

    def time(self):
        return (10_000, 0)

    def bgsave(self, schedule):
        assert schedule
        self.bgsaves += 1
        if self.busy_first and self.bgsaves == 1:
            raise redis.ResponseError("Background save already in progress")
        return True


def info(in_progress=0, last_save=100, saves=4, status="ok"):
    return {"rdb_bgsave_in_progress": in_progress, "rdb_last_save_time": last_save,
            "rdb_saves": saves, "rdb_last_bgsave_status": status}  # fmt: skip


def test_snapshot_waits_for_someone_elses_save_then_takes_its_own():
    client = ScriptedRedis(
        [info(1, saves=4), info(1, saves=4), info(0, saves=5), info(0, saves=5), info(1, saves=6),
         info(0, saves=6)],
        busy_first=True,
    )  # fmt: skip
    after = take_snapshot(client, "Redis on t", sleep=lambda s: None)
    assert client.bgsaves == 2
    assert after.saves == 6


def test_failed_save_is_reported():
    client = ScriptedRedis([info(), info(1, saves=5), info(0, saves=5, status="err")])
    with pytest.raises(SnapshotFailed, match=r"BGSAVE failed \(rdb_last_bgsave_status:err\)"):
        take_snapshot(client, "Redis on t", sleep=lambda s: None)


def test_snapshot_times_out_clearly():
    ticks = iter(range(1000))
    client = ScriptedRedis([info(), info(1, saves=5)])
    with pytest.raises(SnapshotFailed, match="did not finish in 3 s"):
        take_snapshot(client, "Redis on t", timeout=3, clock=lambda: next(ticks), sleep=lambda s: 0)
