"""restore.units: the systemd units broken or lost."""

from __future__ import annotations

from invoke import task

from ..core.runner import guarded
from .env import HELP


@task(help=HELP)
@guarded
def units(c, from_="latest", source=None, yes=False, dry_run=False, force=False):
    """Put the unit files and drop-ins back, daemon-reload, enable, restart in order."""
    from ..core.recovery import recover
    from ..core.restores import units as units_restore

    recover(
        c,
        "restore.units",
        lambda ctx: units_restore.plan(ctx, from_),
        source=source,
        yes=yes,
        dry_run=dry_run,
        runbook_rto=units_restore.RUNBOOK_RTO,
        force=force,
    )
