"""backup.replicate: the off-site copy of the store (SFTP vault or S3 bucket)."""

from __future__ import annotations

from invoke import task

from ..core.errors import UsageError
from ..core.runner import finish, first_call, guarded, load, requested_hosts, target_hosts

HELP = {
    "dry_run": "show what would be sent and send nothing",
    "rescan": "list every backup on the off-site box and rewrite its index (slow on a far link)",
    "verbose": "one row per backup, also those already there",
    "json": "every row as JSON instead of the table",
    "transfers": "send this many backups at once (default: config backup.offsite_transfers)",
}


@task(help=HELP)
@guarded
def replicate(c, dry_run=False, rescan=False, verbose=False, json=False, transfers=None):
    """Send the backups the off-site box lacks (all hosts unless -H), verified there."""
    from ..core.offsite import replicate_hosts
    from ..core.offsite_backend import has_offsite
    from ..core.store import store_locks

    if not first_call("backup.replicate"):
        return
    inventory = load(c)
    hosts = target_hosts(c, inventory, required=False, offsite_boxes=False)
    if requested_hosts(c) is None:
        hosts = [h for h in hosts if has_offsite(h)]
        if not hosts:
            raise UsageError(
                "no host sets backup.offsite_host or backup.offsite_s3_bucket; "
                "name the off-site store there"
            )
    workers = int(transfers or c.config.backup.offsite_transfers)
    options = {"rescan": rescan, "verbose": verbose, "as_json": json, "transfers": workers}
    if dry_run:
        finish(replicate_hosts(hosts, inventory.host, dry_run=True, **options))
        return
    with store_locks(hosts, purpose="backup.replicate"):
        outcomes = replicate_hosts(hosts, inventory.host, **options)
    finish(outcomes)
