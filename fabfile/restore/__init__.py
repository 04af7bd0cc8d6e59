"""restore.*: one command per runbook disaster scenario."""

from invoke import Collection

from . import env, redis, server, units, unlock

# restore.health_timeout is configured at the root (fabfile/__init__.py): drill and
# checklist --guided use it too.
ns = Collection("restore", env.env, units.units, redis.redis, server.server, unlock.unlock)
