"""deploy.rollback: runbook scenario 3, a release that broke production."""

from __future__ import annotations

from invoke import task

from ..core.runner import guarded

HELP = {
    "to": "tag or commit to go back to (default: the previous good deployment in the "
    "host's history, else the newest tag before HEAD; refs marked bad are skipped)",
    "find_links": "a URL of wheels the box can reach, for pip --no-index --find-links "
    "when requirements.txt changed (default: the inventory's restore.find_links, else pip's "
    "index)",
    "yes": "do not ask for confirmation",
    "dry_run": "print the plan (target, last commits, history) and change nothing",
}


@task(help=HELP)
@guarded
def rollback(c, to=None, find_links=None, yes=False, dry_run=False):
    """Go back to the previous good deployment: stop, check out, start gated, record."""
    from ..core.deploys.run import deploy

    deploy(c, "rollback", to=to, find_links=find_links, yes=yes, dry_run=dry_run)
