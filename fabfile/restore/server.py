"""restore.server: runbook scenario 1, the server lost; rebuild it on a fresh Debian box."""

from __future__ import annotations

from invoke import task

from ..core.recovery import recover
from ..core.restores import server as server_restore
from ..core.restores.server_options import Options, PipSource
from ..core.runner import guarded
from .env import HELP as COMMON_HELP

HELP = {
    **COMMON_HELP,
    "from_": "which env and units backups of --source: latest (default), an id or a unique prefix",
    "source": "the host whose backups to restore (default: the target itself)",
    "ref": "tag or commit to check out (default: the commit the backups recorded as deployed)",
    "wheelhouse": "a local directory of *.whl to push and install from (box without internet)",
    "find_links": "a URL of wheels the box can reach: pip --no-index --find-links",
    "index_url": "a package index URL the box can reach: pip --index-url",
    "force": "go on even though the target already serves a healthy zachot API, or a "
    "backup fails verification",
    "dry_run": "print the plan with masked diffs and change nothing",
}


@task(help=HELP)
@guarded
def server(
    c,
    from_="latest",
    source=None,
    ref=None,
    wheelhouse=None,
    find_links=None,
    index_url=None,
    force=False,
    yes=False,
    dry_run=False,
):
    """Rebuild a server on a fresh Debian box from --source's backups, then start and check it."""
    options = Options(
        selector=from_,
        ref=ref,
        pip=PipSource.parse(wheelhouse, find_links, index_url),
        force=force,
        dry_run=dry_run,
    )
    recover(
        c,
        "restore.server",
        lambda ctx: server_restore.plan(ctx, options),
        source=source,
        yes=yes,
        dry_run=dry_run,
        runbook_rto=server_restore.RUNBOOK_RTO,
        force=force,
    )
