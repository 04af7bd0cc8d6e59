"""restore.env: runbook scenario 4, the env file deleted or damaged."""

from __future__ import annotations

from invoke import task

from ..core.runner import guarded

HELP = {
    "from_": "latest (default), a backup id, or a unique id prefix",
    "source": "restore the backups of this inventory host (default: the host the inventory "
    "says the target replaces, else the target itself)",
    "yes": "do not ask for confirmation",
    "dry_run": "print the plan with a masked diff and change nothing",
    "force": "use the backup even though it fails verification (damaged or incomplete)",
}


@task(help=HELP)
@guarded
def env(c, from_="latest", source=None, yes=False, dry_run=False, force=False):
    """Put the env file back from a backup (0600, service user), then restart and check health."""
    from ..core.recovery import recover
    from ..core.restores import env as env_restore

    recover(
        c,
        "restore.env",
        lambda ctx: env_restore.plan(ctx, from_),
        source=source,
        yes=yes,
        dry_run=dry_run,
        runbook_rto=env_restore.RUNBOOK_RTO,
        force=force,
    )
