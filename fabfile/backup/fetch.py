"""backup.fetch: rebuild the local store from the off-site copy (SFTP vault or S3)."""

from __future__ import annotations

from invoke import task

from ..core.errors import UsageError
from ..core.manifest import KINDS
from ..core.runner import finish, first_call, guarded, load, requested_hosts, target_hosts

HELP = {
    "kind": f"only this kind ({', '.join(KINDS)}); default: every kind",
    "dry_run": "show what would be fetched and fetch nothing",
    "json": "every row as JSON instead of the table",
}


@task(help=HELP)
@guarded
def fetch(c, kind=None, dry_run=False, json=False):
    """Fetch the backups the local store lacks from the off-site copy, verified (-H: hosts)."""
    from ..core.offsite_backend import has_offsite
    from ..core.offsite_fetch import fetch_hosts

    if not first_call("backup.fetch"):
        return
    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    inventory = load(c)
    hosts = target_hosts(c, inventory, required=False, offsite_boxes=False)
    if requested_hosts(c) is None:
        hosts = [h for h in hosts if has_offsite(h)]
        if not hosts:
            raise UsageError("no host sets backup.offsite_host or backup.offsite_s3_bucket")
    kinds = (kind,) if kind else KINDS
    finish(fetch_hosts(hosts, inventory.host, kinds=kinds, dry_run=dry_run, as_json=json))
