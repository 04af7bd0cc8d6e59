"""deploy.*: move a host's code back (runbook scenario 3) or forward, with history."""

from invoke import Collection

from ..restore import ns as restore_ns
from . import release, rollback

ns = Collection("deploy", rollback.rollback, release.release)
# Deploys run through recover() and gate starts like the restores: one health timeout.
ns.configure({"restore": restore_ns.configuration()["restore"]})
