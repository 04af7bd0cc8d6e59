"""The run lock on a host: two operators never recover the same box at once.

A directory under /run/lock, made with mkdir (atomic), holding the holder's
record. Staleness is judged by lock.is_stale, like the store lock; /run is
emptied by a reboot, which ends every run that could have held it.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

from .errors import LockHeldError
from .lock import LockHolder, is_stale, pid_alive
from .transport import Transport

LOCK_DIR = "/run/lock/zachot-ops.lock"
STALE_AFTER = timedelta(hours=2)

_ACQUIRE = (
    'umask 077; mkdir -p /run/lock; if mkdir "$1" 2>/dev/null; then '
    'printf "%s" "$2" > "$1/holder" && echo ACQUIRED; else echo HELD; cat "$1/holder"; fi'
)
_RELEASE = 'grep -qF -- "$2" "$1/holder" 2>/dev/null && rm -rf -- "$1"; true'
_BREAK = 'mv -- "$1" "$1.stale-$$" && rm -rf -- "$1.stale-$$"'


class RemoteLock:
    def __init__(self, transport: Transport, purpose: str) -> None:
        self.transport = transport
        self.holder = LockHolder.current(purpose)

    def __enter__(self) -> RemoteLock:
        for _attempt in range(2):
            said = self._run(_ACQUIRE, self.holder.to_json()).stdout
            if said.startswith("ACQUIRED"):
                return self
            other = _parse_holder(said.partition("\n")[2])
            if not is_stale(
                other,
                now=datetime.now(UTC),
                this_host=socket.gethostname(),
                pid_alive=pid_alive,
                stale_after=STALE_AFTER,
            ):
                break
            self._run(_BREAK)
        name = self.transport.host.name
        who = other.describe() if other else "an unreadable holder"
        raise LockHeldError(
            f"{name}: another recovery holds the run lock: {who}; wait for it, or if it "
            f"is gone run: fab -H {name} restore.unlock"
        )

    def __exit__(self, *exc: object) -> None:
        self._run(_RELEASE, self.holder.token)

    def _run(self, script: str, arg: str = ""):
        return self.transport.run(["sh", "-c", script, "sh", LOCK_DIR, arg], sudo=True)


def _parse_holder(text: str) -> LockHolder | None:
    try:
        return LockHolder.from_json(text)
    except ValueError:
        return None


def force_unlock(transport: Transport) -> str:
    said = transport.run(["cat", f"{LOCK_DIR}/holder"], sudo=True, check=False)
    if not said.ok:
        return "no run lock held"
    transport.run(["sh", "-c", _BREAK, "sh", LOCK_DIR], sudo=True)
    holder = _parse_holder(said.stdout)
    return f"removed the run lock of {holder.describe() if holder else 'an unreadable holder'}"
