"""restore.redis and backup.redis act only on paths under redis.data_dir (issue 10, hole 6)."""

from __future__ import annotations

import pytest

from fabfile.core.errors import UsageError
from fabfile.core.redis_access import RedisServer, confine

pytestmark = pytest.mark.unit


def found(dir: str, dbfilename: str = "dump.rdb", aof: str | None = None) -> RedisServer:
    return RedisServer("7.0", 1, dir, dbfilename, aof is not None, aof, True)


@pytest.mark.parametrize(
    "server",
    [found("/var/lib/redis"), found("/var/lib/redis/"), found("/var/lib/redis/sub", aof="aofdir")],
)
def test_paths_under_data_dir_pass(server: RedisServer) -> None:
    assert confine(server, "/var/lib/redis", host="prod", doing="x") is server


@pytest.mark.parametrize(
    ("server", "said"),
    [
        (found("/etc"), "dir=/etc"),
        (found("/var/lib/redis/../../../etc"), "dir=/var/lib/redis/../../../etc"),
        (found("/var/lib/redis-other"), "dir=/var/lib/redis-other"),
        (found("var/lib/redis"), "dir=var/lib/redis"),
        (found("/var/lib/redis", "../../etc/shadow"), "dbfilename=../../etc/shadow"),
        (found("/var/lib/redis", ".."), "dbfilename=.."),
        (found("/var/lib/redis", aof="/etc"), "appenddirname=/etc"),
        (found("/tmp/\x1b[31mx"), "dir=/tmp/?[31mx"),
    ],
)
def test_anything_else_is_refused_in_one_line(server: RedisServer, said: str) -> None:
    with pytest.raises(UsageError) as refused:
        confine(server, "/var/lib/redis", host="prod12", doing="restore.redis only moves files")
    assert refused.value.message == (
        f"Redis on prod12 says {said}; restore.redis only moves files under redis.data_dir "
        "(/var/lib/redis); fix Redis's config or the inventory"
    )
