"""The run lock on a host: two operators never recover the same box at once.

A directory made with mkdir (atomic) holding the holder's record, inside
/run/zachot-ops: root-owned, 0700, made by the same script. World-writable
/run/lock is not used: any local user could pre-create the lock there (blocking
every recovery) or plant links in it. The parent is refused unless it is a
root-owned directory (not a link) that only root can write, and a lock in it
that is not a root-owned directory is hostile: set aside and replaced. Staleness
is judged by lock.is_stale, like the store lock; /run is emptied by a reboot,
which ends every run that could have held it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .errors import LockHeldError, RemoteCommandError
from .lock import LockHolder, is_stale, machine_id, pid_alive
from .transport import CommandResult, Transport

LOCK_PARENT = "/run/zachot-ops"
LOCK_DIR = f"{LOCK_PARENT}/lock"
STALE_AFTER = timedelta(hours=2)

# $1 the parent, $2 the lock, $3 the holder record. Nothing here follows a link: the
# parent is checked with -L and stat before use, and only root can write inside it.
_PARENT = (
    'umask 077; mkdir -- "$1" 2>/dev/null; '
    'if [ -L "$1" ]; then echo "BAD $1 is a symbolic link"; exit 0; fi; '
    'if [ ! -d "$1" ]; then echo "BAD $1 is not a directory"; exit 0; fi; '
    'owner=$(stat -c %U -- "$1"); '
    'if [ "$owner" != root ]; then echo "BAD $1 is owned by $owner"; exit 0; fi; '
    'if [ -n "$(find "$1" -maxdepth 0 -perm /022)" ]; then '
    'echo "BAD $1 is writable by others (mode $(stat -c %a -- "$1"))"; exit 0; fi; '
)
# A lock that root did not make (not a root-owned real directory) is set aside, not obeyed.
_HOSTILE = (
    'if [ -e "$2" ] || [ -L "$2" ]; then '
    'if [ -L "$2" ] || [ ! -d "$2" ] || [ "$(stat -c %u -- "$2")" != 0 ]; then '
    'mv -- "$2" "$2.hostile-$$" && rm -rf -- "$2.hostile-$$" && echo HOSTILE; fi; fi; '
)
_ACQUIRE = (
    _PARENT
    + _HOSTILE
    + 'if mkdir -- "$2" 2>/dev/null; then printf "%s" "$3" > "$2/holder" && echo ACQUIRED; '
    'else echo HELD; cat -- "$2/holder" 2>/dev/null; fi; true'
)
_RELEASE = _PARENT + 'grep -qF -- "$3" "$2/holder" 2>/dev/null && rm -rf -- "$2"; true'
_BREAK = _PARENT + 'mv -- "$2" "$2.stale-$$" && rm -rf -- "$2.stale-$$"'


class RemoteLock:
    def __init__(self, transport: Transport, purpose: str) -> None:
        self.transport = transport
        self.holder = LockHolder.current(purpose)

    def __enter__(self) -> RemoteLock:
        for _attempt in range(2):
            said = _run(self.transport, _ACQUIRE, self.holder.to_json()).stdout
            if "ACQUIRED" in said.splitlines():
                return self
            other = _parse_holder(said.partition("HELD\n")[2])
            if not is_stale(
                other,
                now=datetime.now(UTC),
                this_machine=machine_id(),
                pid_alive=pid_alive,
                stale_after=STALE_AFTER,
            ):
                break
            _run(self.transport, _BREAK)
        name = self.transport.host.name
        who = other.describe() if other else "an unreadable holder"
        raise LockHeldError(
            f"{name}: another recovery holds the run lock: {who}; wait for it, or if it "
            f"is gone run: fab -H {name} restore.unlock"
        )

    def __exit__(self, *exc: object) -> None:
        _run(self.transport, _RELEASE, self.holder.token)


def _run(transport: Transport, script: str, arg: str = "") -> CommandResult:
    result = transport.run(["sh", "-c", script, "sh", LOCK_PARENT, LOCK_DIR, arg], sudo=True)
    if result.stdout.startswith("BAD "):
        why = result.stdout.splitlines()[0][4:]
        raise RemoteCommandError(
            f"{transport.host.name}: {why}; it must be a root-owned directory (0700) that only "
            f"root can write; remove it (rm -rf {LOCK_PARENT}) and run again"
        )
    return result


def _parse_holder(text: str) -> LockHolder | None:
    try:
        return LockHolder.from_json(text)
    except ValueError:
        return None


def force_unlock(transport: Transport) -> str:
    said = _run(transport, _PARENT + '[ -e "$2" ] && echo HELD && cat -- "$2/holder"; true')
    if not said.stdout.startswith("HELD"):
        return "no run lock held"
    _run(transport, _BREAK)
    holder = _parse_holder(said.stdout.partition("HELD\n")[2])
    return f"removed the run lock of {holder.describe() if holder else 'an unreadable holder'}"
