"""restore.*: one command per runbook disaster scenario."""

from invoke import Collection

from . import env, redis, server, units, unlock

ns = Collection("restore", env.env, units.units, redis.redis, server.server, unlock.unlock)
# Seconds each service may take to pass its health gate after a start.
ns.configure({"restore": {"health_timeout": 60}})
