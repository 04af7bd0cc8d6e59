"""backup.redis: a fresh RDB snapshot of a running Redis, and the Dramatiq queue sizes.

The runbook advises against it (Redis holds only transient queues, and a
restored dump can run tasks twice) and its recipe stops Redis to copy the
file. Here Redis keeps running: BGSAVE through the SSH tunnel, wait until the
save is done, then pull the file Redis wrote (it writes a temp file and
renames it, so the copy is never torn).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import crypto, dramatiq_queues, output, redis_access, runner
from ..errors import ZachotError
from ..plan import Step
from .context import BackupContext
from .files import Wanted, pull_files, summary

if TYPE_CHECKING:
    import redis

NAME = "dump.rdb"  # the name in the store, whatever dbfilename says
RDB_MAGIC = b"REDIS"
SNAPSHOT_TIMEOUT = 300.0
POLL_INTERVAL = 0.1
WARNING = (
    "the runbook does not recommend backing up Redis: it holds only transient task queues, "
    "and restoring a dump can run queued tasks twice"
)


class SnapshotFailed(ZachotError):
    pass


def confirm(*, yes: bool) -> None:
    """Say why this is not recommended; go on only with --yes or a typed yes."""
    output.warn(WARNING)
    runner.confirm("Back up Redis anyway?", yes=yes)


@dataclass(frozen=True)
class SaveState:
    """The RDB part of INFO persistence."""

    in_progress: bool
    last_save: int  # LASTSAVE, whole seconds
    saves: int | None  # rdb_saves (Redis 7+); changes even within one second
    status: str  # rdb_last_bgsave_status: ok | err

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> SaveState:
        saves = info.get("rdb_saves")
        return cls(
            in_progress=bool(int(info.get("rdb_bgsave_in_progress", 0))),
            last_save=int(info.get("rdb_last_save_time", 0)),
            saves=None if saves is None else int(saves),
            status=str(info.get("rdb_last_bgsave_status", "ok")),
        )


def save_done(before: SaveState, now: SaveState, *, seen_running: bool) -> bool:
    """Has a save that began after `before` (ours) finished?

    seen_running: a save was in progress at some poll after our BGSAVE was
    accepted, which can only be ours or a later one.
    """
    if now.in_progress:
        return False
    more_saves = now.saves is not None and before.saves is not None and now.saves > before.saves
    return seen_running or more_saves or now.last_save != before.last_save


def take_snapshot(
    client: redis.Redis,
    where: str,
    *,
    timeout: float = SNAPSHOT_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SaveState:
    """BGSAVE and wait for it; Redis keeps serving meanwhile."""
    import redis

    deadline = clock() + timeout

    def state() -> SaveState:
        return SaveState.from_info(client.info("persistence"))

    def wait(done: Callable[[SaveState], bool]) -> SaveState:
        while not done(now := state()):
            if clock() >= deadline:
                raise SnapshotFailed(
                    f"{where}: BGSAVE did not finish in {timeout:g} s; Redis is still saving, "
                    "see INFO persistence, then try again"
                )
            sleep(POLL_INTERVAL)
        return now

    while True:
        before = state()
        if before.saves is None and before.last_save >= int(client.time()[0]):
            # Without rdb_saves only LASTSAVE tells; let its second pass first.
            before = wait(lambda s: int(client.time()[0]) > s.last_save)
        try:
            # SCHEDULE: while an AOF rewrite runs, save right after it instead of failing.
            client.bgsave(schedule=True)
            break
        except redis.ResponseError as exc:
            if "already in progress" not in str(exc):
                raise
            # That save began before we asked; let it end, then take our own.
            wait(lambda s: not s.in_progress)

    seen_running = False

    def ours_done(now: SaveState) -> bool:
        nonlocal seen_running
        seen_running = seen_running or now.in_progress
        return save_done(before, now, seen_running=seen_running)

    after = wait(ours_done)
    if after.status != "ok":
        raise SnapshotFailed(
            f"{where}: BGSAVE failed (rdb_last_bgsave_status:{after.status}); "
            "see the Redis log: disk full, or its dir not writable?"
        )
    return after


def step(ctx: BackupContext) -> Step:
    host = ctx.host
    target = redis_access.parse_url(host.redis.url)
    keys = [dramatiq_queues.QueueKeys(host.dramatiq.namespace, q) for q in host.dramatiq.queues]
    recipients = crypto.recipients_for(host, "redis")
    stored = crypto.stored_name(NAME, encrypted=bool(recipients))
    how = f"age-encrypted to {len(recipients)} recipient(s)" if recipients else "0600"
    return Step(
        name="redis",
        title="back up Redis (not recommended)",
        actions=(
            f"tunnel over this SSH connection to Redis at {target.where} db {target.db} "
            "(a Unix socket in a private directory; no port is opened on either side)",
            "count Dramatiq messages in "
            + ", ".join(f"{k.queued} (+ .DQ, .XQ, {k.namespace}:__acks__.*)" for k in keys)
            + f" and live workers in {dramatiq_queues.heartbeats_key(host.dramatiq.namespace)}",
            f"BGSAVE and wait up to {SNAPSHOT_TIMEOUT:g} s for it; Redis keeps running",
            f"pull <CONFIG GET dir>/<dbfilename> (only under {host.redis.data_dir}) "
            f"with sudo to {ctx.store.root}/{host.name}/redis/<new id>/{stored} ({how})",
        ),
        run=lambda: run(ctx),
    )


def run(ctx: BackupContext) -> str:
    host = ctx.host
    where = redis_access.describe(ctx.transport)
    with redis_access.open_redis(ctx.transport) as client:
        found = redis_access.server(client, fallback_dir=host.redis.data_dir)
        # Root reads this path: only under redis.data_dir, whatever CONFIG SET said.
        server = redis_access.confine(
            found, host.redis.data_dir, host=host.name, doing="backup.redis only reads files"
        )
        report = dramatiq_queues.read_report(client, host.dramatiq.namespace, host.dramatiq.queues)
        output.table(f"{host.name}: {report.title}", dramatiq_queues.COLUMNS, report.rows())
        saved = take_snapshot(client, where)
    if not server.config_readable:
        output.warn(f"{where}: CONFIG GET is denied; pulling {server.rdb_path} (redis.data_dir)")
    if server.appendonly:
        output.warn(
            f"{where}: appendonly is on, so Redis loads {server.aof_path or 'the AOF'} at start, "
            f"not {server.dbfilename}; a restore of this dump must set the AOF aside"
        )
    meta = {**server.as_meta(), "last_save": saved.last_save, "dramatiq": report.as_meta()}

    def describe(contents: dict[str, bytes]) -> dict[str, Any]:
        if not contents[NAME].startswith(RDB_MAGIC):
            raise SnapshotFailed(f"{where}: {server.rdb_path} is not an RDB file (no REDIS header)")
        return meta

    result = pull_files(ctx, "redis", [Wanted(NAME, server.rdb_path)], describe=describe)
    queued = sum(q.queued + q.delayed + q.in_flight for q in report.queues)
    return f"{summary(result)}; {server.dbsize} keys, {queued} Dramatiq messages pending"
