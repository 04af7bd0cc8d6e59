"""restore.redis (runbook scenario 2): a clean Redis, or a dump taken by backup.redis.

The data files are moved aside, never deleted, and only while Redis is stopped:
Redis writes its RDB when it shuts down (FACTS.md), so anything done to the
dump before the stop would be overwritten.
"""

from __future__ import annotations

import posixpath

from .. import output
from ..backups.redis import NAME as DUMP_NAME
from ..crypto import find_record
from ..dramatiq_queues import COLUMNS, read_report
from ..errors import UsageError
from ..facts import gather, is_file
from ..plan import Plan, Step
from ..redis_access import RedisServer, RedisUnavailable, confine, open_redis, server
from ..store import BackupRef
from . import steps
from .context import RestoreContext

RUNBOOK_RTO = "5-10 min"
DUPLICATES_WARNING = (
    "the runbook advises against restoring Redis: queued tasks in the dump may run twice"
)


def data_files(ctx: RestoreContext) -> RedisServer | None:
    """Where the data files are, asked of the running Redis; None if it does not answer.

    Only paths under redis.data_dir are accepted (confine): root moves and writes them."""
    data_dir = ctx.host.redis.data_dir
    try:
        with open_redis(ctx.transport, timeout=5) as client:
            found = server(client, fallback_dir=data_dir)
    except RedisUnavailable:
        return None
    return confine(found, data_dir, host=ctx.host.name, doing="restore.redis only moves files")


def paths(ctx: RestoreContext, found: RedisServer | None) -> tuple[str, list[str]]:
    """The RDB path and every data path (RDB, AOF file or directory) to set aside."""
    data_dir = found.dir if found else ctx.host.redis.data_dir
    rdb = found.rdb_path if found else posixpath.join(data_dir, "dump.rdb")
    aof = [found.aof_path] if found and found.aof_path else []
    if not found:
        aof = [posixpath.join(data_dir, n) for n in ("appendonlydir", "appendonly.aof")]
    return rdb, [rdb, *aof]


def plan(ctx: RestoreContext, selector: str | None) -> Plan:
    found = data_files(ctx)
    rdb, data = paths(ctx, found)
    ref = ctx.backup("redis", selector) if selector is not None else None
    dump = _dump_install(ctx, ref, rdb) if ref else None
    title = f"restore.redis from {ref.host}/{ref.id}" if ref else "restore.redis (clean)"
    chosen = [
        steps.stop(ctx, ("redis", "worker")),
        _set_aside(ctx, data, keep_if=dump),
        *([steps.install(ctx, f"place the dump {ref.id}", [dump])] if ref and dump else []),
        steps.start(ctx, ("redis",)),
        steps.start(ctx, ("worker",)),
        _report(ctx, restored=dump is not None),
    ]
    return Plan(ctx.host.name, title, tuple(chosen))


def _dump_install(ctx: RestoreContext, ref: BackupRef, rdb: str) -> steps.Install:
    record = find_record(ref, DUMP_NAME)
    output.warn(DUPLICATES_WARNING)
    return steps.from_backup(
        ctx, ref, record, rdb, mode=record.mode, owner=record.owner, group=record.group
    )


# Checked again here, in the command that acts: a link on the way out of data_dir would
# otherwise redirect the mv (the Python check sees only the names).
_SET_ASIDE = (
    'root=$(realpath -e -- "$ROOT") || exit 3; for p; do '
    'd=$(realpath -e -- "$(dirname -- "$p")") || continue; case "$d/" in "$root"/*) ;; '
    '*) echo "$p is outside $ROOT" >&2; exit 3;; esac; '
    '{ [ -e "$p" ] || [ -L "$p" ]; } && mv -- "$p" "$p.pre-restore.$STAMP" && echo "$p"; '
    "done; true"
)


def _set_aside(ctx: RestoreContext, data: list[str], *, keep_if: steps.Install | None) -> Step:

    def present() -> list[str]:
        found = []
        for path in data:
            exists = gather(ctx.transport, is_file(path)) or _is_dir(ctx, path)
            wanted = keep_if is not None and path == keep_if.remote
            if exists and not (wanted and _digest(ctx, path) == keep_if.sha256):
                found.append(path)
        return found

    def run() -> str:
        root = ctx.host.redis.data_dir
        argv = ["env", f"STAMP={ctx.stamp}", f"ROOT={root}", "sh", "-c", _SET_ASIDE, "sh"]
        argv += present()
        moved = ctx.transport.run(argv, sudo=True).stdout.split()
        kept = ", ".join(f"{m}.pre-restore.{ctx.stamp}" for m in moved)
        return f"kept {kept}" if moved else "no data files"

    return Step(
        "set-aside",
        "move the data files aside (not deleted)",
        tuple(f"mv {p} {p}.pre-restore.{ctx.stamp} if it exists" for p in data),
        run=run,
        done=lambda: not present(),
    )


def _is_dir(ctx: RestoreContext, path: str) -> bool:
    return ctx.transport.run(["test", "-d", path], sudo=True, check=False).ok


def _digest(ctx: RestoreContext, path: str) -> str | None:
    return gather(ctx.transport, steps.digests(path)).get(path)


def _report(ctx: RestoreContext, *, restored: bool) -> Step:
    dramatiq = ctx.host.dramatiq

    def run() -> str:
        with open_redis(ctx.transport) as client:
            report = read_report(client, dramatiq.namespace, dramatiq.queues)
            size = int(client.dbsize())
        output.table(report.title, COLUMNS, report.rows())
        if restored:
            return f"DBSIZE {size}; {DUPLICATES_WARNING}"
        return f"DBSIZE {size}; the tasks that were queued are lost; re-create them through the API"

    return Step(
        "report",
        "report the Dramatiq queues (real keys)",
        (f"read {dramatiq.namespace}:<queue>, .DQ, .XQ, acks and heartbeats",),
        run=run,
    )


def require_yes_for_dump(selector: str | None, yes: bool) -> None:
    if selector is not None and not yes:
        raise UsageError(f"{DUPLICATES_WARNING}; restoring a dump needs --yes")
