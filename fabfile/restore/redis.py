"""restore.redis: runbook scenario 2, Redis data lost or corrupt."""

from __future__ import annotations

from invoke import task

from ..core.runner import guarded
from .env import HELP


@task(help={**HELP, "from_": "restore this backup.redis dump instead of starting clean"})
@guarded
def redis(c, from_=None, source=None, yes=False, dry_run=False, force=False):
    """Stop worker and Redis, set the data aside, start clean (or from a dump), report queues."""
    from ..core.recovery import recover
    from ..core.restores import redis as redis_restore

    if not dry_run:
        redis_restore.require_yes_for_dump(from_, yes)
    recover(
        c,
        "restore.redis",
        lambda ctx: redis_restore.plan(ctx, from_),
        source=source,
        yes=yes,
        dry_run=dry_run,
        runbook_rto=redis_restore.RUNBOOK_RTO,
        force=force,
    )
