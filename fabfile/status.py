"""status: one screen for a host, a group or the whole inventory, one row per host."""

from __future__ import annotations

from datetime import UTC, datetime

from invoke import task

from .core import output
from .core.runner import finish, first_call, guarded, load, target_hosts

HELP = {"json": "print JSON (for monitoring) instead of a table"}


@task(help=HELP)
@guarded
def status(c, json=False):
    """Services, Redis and queues, deployed ref, backup ages and health, for every host."""
    from .core.checklist import status as core

    if not first_call("status"):
        return
    inventory = load(c)
    # Off-site boxes (SFTP only) show up in the backup columns, not as hosts of their own.
    hosts = target_hosts(c, inventory, required=False, offsite_boxes=False)
    password = c.config.get("sudo", {}).get("password")
    states = core.read_all(hosts, inventory.host, password)
    if json:
        output.emit_json([core.as_json(s) for s in states])
    else:
        now = datetime.now(UTC)
        output.table("Fleet status", core.COLUMNS, [core.row(s, now) for s in states])
    finish([core.outcome(s) for s in states])
