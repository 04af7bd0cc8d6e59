"""restore.unlock: remove a host's run lock left by a recovery that died."""

from __future__ import annotations

from invoke import task

from ..core.runner import confirm, guarded, run_per_host


@task(help={"yes": "do not ask for confirmation"})
@guarded
def unlock(c, yes=False):
    """Remove the recovery run lock on a host (only when its holder is gone)."""
    from ..core.remote_lock import force_unlock
    from ..core.transport import Transport

    def work(host):
        confirm(f"Remove the run lock on {host.name}? Only do this if its run is gone", yes=yes)
        with Transport(host) as transport:
            return force_unlock(transport)

    run_per_host(c, "restore.unlock", work, title="Run locks")
