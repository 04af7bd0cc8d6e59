"""drill: rehearse runbook scenario 1 on a scratch host and keep a report of how it went."""

from __future__ import annotations

from invoke import task

from .core import drill as core
from .core.runner import guarded
from .restore.server import HELP as SERVER_HELP

HELP = {
    "source": "the host whose latest backups to restore (required; never the target)",
    **{k: SERVER_HELP[k] for k in ("wheelhouse", "find_links", "index_url")},
    "yes": "do not ask before overwriting the scratch host",
    "dry_run": "print the restore plan and change nothing",
}


@task(help=HELP)
@guarded
def drill(
    c, source=None, wheelhouse=None, find_links=None, index_url=None, yes=False, dry_run=False
):
    """Restore --source's latest backups onto a scratch host, run the checklist, report RTO/RPO."""
    core.drill(
        c,
        source=source,
        wheelhouse=wheelhouse,
        find_links=find_links,
        index_url=index_url,
        yes=yes,
        dry_run=dry_run,
    )
