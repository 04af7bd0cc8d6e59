"""backup.redis: a BGSAVE snapshot of a running Redis and the Dramatiq queue sizes."""

from __future__ import annotations

from invoke import task

from ..core.runner import guarded
from .pull import HELP, _run


@task(help={"yes": HELP["yes"], "dry_run": HELP["dry_run"]})
@guarded
def redis(c, yes=False, dry_run=False):
    """Snapshot Redis without stopping it (BGSAVE) into the store; not recommended, needs --yes."""
    _run(c, "backup.redis", ["redis"], yes=yes, dry_run=dry_run)
