"""backup.*: pull backups into the operator's store, and look after them there."""

from invoke import Collection

from . import cron, fetch, listing, prune, pull, redis, replicate, routine, verify

ns = Collection(
    "backup",
    pull.env,
    pull.units,
    pull.logs,
    redis.redis,
    pull.all_,
    listing.list_,
    verify.verify,
    prune.prune,
    cron.cron,
    replicate.replicate,
    fetch.fetch,
    routine.routine,
)
# backup.all's defaults: hosts at once, --logs, and the off-site copy (made when the
# inventory names backup.offsite_host; --no-offsite skips it).
ns.configure({"backup": {"parallel": 1, "logs": False, "offsite": True}})
# backup.replicate: backups in flight at once (an SFTP vault gets at most 8 sessions).
ns.configure({"backup": {"offsite_transfers": 8}})
# backup.cron: where the routine is scheduled (auto: launchd, systemd user timer, cron).
ns.configure({"backup": {"scheduler": "auto"}})
