"""deploy.*: move a host's code back (runbook scenario 3) or forward, with history."""

from invoke import Collection

from . import release, rollback

# Deploys gate starts like the restores: restore.health_timeout, set at the root.
ns = Collection("deploy", rollback.rollback, release.release)
