"""backup.*: pull backups into the operator's store, and look after them there."""

from invoke import Collection

from . import cron, listing, prune, pull, redis, replicate, verify

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
)
ns.configure({"backup": {"parallel": 1}})
