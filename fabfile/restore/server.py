"""restore.server: runbook scenario 1, the server lost; rebuild it on a fresh Debian box."""

from __future__ import annotations

from dataclasses import replace

from invoke import task

from ..core.runner import guarded, load
from .env import HELP as COMMON_HELP

HELP = {
    **COMMON_HELP,
    "from_": "which env and units backups of --source: latest (default), an id or a unique prefix",
    "source": "the host whose backups to restore (default: the host the inventory says the "
    "target replaces, else the target itself)",
    "ref": "tag or commit to check out (default: the commit the backups recorded as deployed)",
    "wheelhouse": "a local directory of *.whl to push and install from (box without internet; "
    "default: the inventory's restore.wheelhouse)",
    "find_links": "a URL of wheels the box can reach: pip --no-index --find-links (default: "
    "restore.find_links)",
    "index_url": "a package index URL the box can reach: pip --index-url (default: "
    "restore.index_url)",
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
    from ..core.recovery import recover
    from ..core.restores import server as server_restore
    from ..core.restores.server_options import Options, PipSource

    options = Options(selector=from_, ref=ref, force=force, dry_run=dry_run)

    def build(ctx):
        # The flags, else the target's inventory restore.wheelhouse/find_links/index_url.
        pip = PipSource.for_host(ctx.host, wheelhouse, find_links, index_url)
        # The laptop lost too: what the store lacks comes from the off-site copy first.
        return server_restore.plan_fetching(ctx, replace(options, pip=pip), load(c).host)[0]

    recover(
        c,
        "restore.server",
        build,
        source=source,
        yes=yes,
        dry_run=dry_run,
        runbook_rto=server_restore.RUNBOOK_RTO,
        force=force,
    )
