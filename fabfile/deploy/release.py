"""deploy.release: roll a host forward to a ref, recorded like a rollback."""

from __future__ import annotations

from invoke import task

from ..core.runner import guarded
from .rollback import HELP as ROLLBACK_HELP

HELP = {
    **ROLLBACK_HELP,
    "to": "tag, branch or commit to deploy (fetched from origin first)",
}


@task(help=HELP)
@guarded
def release(c, to=None, find_links=None, yes=False, dry_run=False):
    """Deploy --to=<ref>: fetch, stop, check out, start gated, record; a failure marks it bad."""
    from ..core.deploys.run import deploy

    deploy(c, "release", to=to, find_links=find_links, yes=yes, dry_run=dry_run)
