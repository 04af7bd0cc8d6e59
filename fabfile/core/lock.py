"""The store lock: one writer at a time, so a cron run and a manual run never interleave.

Borg-style lock file. It is created atomically *with* its content (write a
temp file, then hard-link it into place, which fails if the lock exists), so a
reader never sees a half-written holder. A lock whose holder is gone (same
machine, dead pid) or that is very old (another machine, where we cannot check
the pid) is broken by renaming it aside; rename is atomic, so only one breaker wins.
"Same machine" is the machine id, not the hostname: two laptops both called
"laptop" must never judge each other's pids.

The pure part (LockHolder, is_stale) does no I/O so a server-side run lock can
reuse it with a remote transport.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import secrets
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from fabfile.core.errors import LockHeldError, StoreError

STALE_AFTER = timedelta(hours=6)
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
# Where a machine without a machine-id keeps the random one made for it.
OWN_MACHINE_ID = Path("~/.config/zachot/machine-id")
POLL_INTERVAL = 0.2
MAX_LOCK_BYTES = 64 * 1024
_MAX_PID = 2**31 - 1
# Filesystems (some FUSE/SMB mounts) that refuse hard links; we fall back to O_EXCL.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    since: str  # ISO-8601 UTC
    purpose: str
    # Random per acquisition: two holders in one process and one second would
    # otherwise write identical files, and release compares content.
    token: str = ""
    machine: str = ""  # machine_id() of the holder; "" in records older than it

    @classmethod
    def current(cls, purpose: str, *, now: datetime | None = None) -> LockHolder:
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            since=moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            purpose=purpose,
            token=secrets.token_hex(8),
            machine=machine_id(),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self)) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LockHolder:
        """Raises ValueError when the text is not a holder record."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("lock content is not an object")
        pid = data.get("pid")
        # pid <= 0 must never reach os.kill: 0 and -1 address process groups.
        if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= _MAX_PID:
            raise ValueError("lock pid is not a positive integer")
        keys = ("host", "since", "purpose", "token", "machine")
        fields = {key: data.get(key, "") for key in keys}
        if not all(isinstance(value, str) for value in fields.values()) or not fields["host"]:
            raise ValueError("lock host/since/purpose must be strings")
        return cls(pid=pid, **fields)

    @property
    def since_at(self) -> datetime | None:
        try:
            moment = datetime.fromisoformat(self.since)
        except ValueError:
            return None
        return moment if moment.tzinfo else None

    def describe(self) -> str:
        """'ops-laptop pid 4242 since 2026-11-24T15:01:02Z (backup.all)', safe to print."""
        purpose = f" ({_printable(self.purpose)})" if self.purpose else ""
        return f"{_printable(self.host)} pid {self.pid} since {_printable(self.since)}{purpose}"


def is_stale(
    holder: LockHolder | None,
    *,
    now: datetime,
    this_machine: str,
    pid_alive: Callable[[int], bool],
    stale_after: timedelta = STALE_AFTER,
    modified: datetime | None = None,
) -> bool:
    """Whether a lock may be broken. `holder` is None when the content is unreadable.

    On our own machine (same machine id) the pid answers it exactly, however old
    the lock. Elsewhere, or for a record without a machine id, we can only go by
    age; both the holder's `since` and the file's mtime come from clocks that may
    be skewed, so the lock counts as old only if the newer of the two is older
    than `stale_after`.
    """
    if holder is not None and holder.machine and holder.machine == this_machine:
        return not pid_alive(holder.pid)
    stamps = [t for t in (modified, holder.since_at if holder else None) if t is not None]
    return bool(stamps) and now - max(stamps) > stale_after


@functools.cache
def machine_id() -> str:
    """This machine's id: systemd's machine-id, else a random one kept in our config dir."""
    for path in MACHINE_ID_FILES:
        with contextlib.suppress(OSError):
            if found := path.read_text().strip():
                return found
    own = OWN_MACHINE_ID.expanduser()
    with contextlib.suppress(OSError):
        if found := own.read_text().strip():
            return found
    made = secrets.token_hex(16)
    try:
        own.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_new(own, made + "\n")
    except FileExistsError:  # another process made it first: use theirs
        return own.read_text().strip() or made
    except OSError:
        pass  # unwritable: this process's own id; its locks are then judged by age only
    return made


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OverflowError, ValueError):
        return False
    return True


class StoreLock:
    """`with StoreLock(path, timeout=30, purpose="backup.all"):` — not reentrant."""

    def __init__(
        self,
        path: Path,
        *,
        timeout: float,
        purpose: str,
        stale_after: timedelta = STALE_AFTER,
        poll_interval: float = POLL_INTERVAL,
        what: str = "store",
    ) -> None:
        self.path = Path(path)
        self.timeout = max(float(timeout), 0.0)
        self.purpose = purpose
        self.stale_after = stale_after
        self.poll_interval = poll_interval
        self.what = what
        self._content: str | None = None  # what we wrote, while we hold the lock

    @property
    def held(self) -> bool:
        return self._content is not None

    def acquire(self) -> None:
        if self.held:
            raise StoreError(f"{self.path}: lock already held by this object (not reentrant)")
        deadline = time.monotonic() + self.timeout
        while True:
            content = LockHolder.current(self.purpose).to_json()
            if self._try_create(content):
                self._content = content
                return
            seen = self._read(self.path)
            if seen is None:
                continue  # released between our attempt and our read: try again at once
            text, holder, modified = seen
            if self._is_stale(holder, modified):
                self._break(text)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockHeldError(self._held_message(holder))
            time.sleep(min(self.poll_interval, remaining))

    def release(self) -> None:
        """Remove the lock only if it is still ours: it may have been broken and retaken."""
        if self._content is None:
            return
        seen = self._read(self.path)
        if seen is not None and seen[0] == self._content:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._content = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _is_stale(self, holder: LockHolder | None, modified: datetime) -> bool:
        return is_stale(
            holder,
            now=datetime.now(UTC),
            this_machine=machine_id(),
            pid_alive=pid_alive,
            stale_after=self.stale_after,
            modified=modified,
        )

    def _try_create(self, content: str) -> bool:
        tmp = self.path.with_name(f"{self.path.name}.tmp-{secrets.token_hex(8)}")
        try:
            _write_new(tmp, content)
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno in _NO_HARD_LINKS:
                return self._create_exclusive(content)
            raise StoreError(f"cannot create lock {self.path}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _create_exclusive(self, content: str) -> bool:
        # Not atomic with its content: a reader may briefly see an empty file.
        # That reads as "unreadable, young" and so is waited for, never broken.
        try:
            _write_new(self.path, content)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot create lock {self.path}: {exc.strerror}") from None
        return True

    @staticmethod
    def _read(path: Path) -> tuple[str, LockHolder | None, datetime] | None:
        """(raw text, holder or None if unreadable, mtime), or None when there is no lock."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a directory or symlink where the lock should be
            raise StoreError(f"cannot read lock {path}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"cannot read lock {path}: not a regular file")
        with os.fdopen(fd, "rb") as handle:
            modified = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, UTC)
            text = handle.read(MAX_LOCK_BYTES).decode("utf-8", errors="replace")
        try:
            holder = LockHolder.from_json(text)
        except ValueError:
            holder = None
        return text, holder, modified

    def _break(self, seen_text: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.stale-{secrets.token_hex(8)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another breaker (or the holder) got there first
        try:
            moved = self._read(aside)
            if moved is None or moved[0] != seen_text:
                # The stale lock was replaced by a live one between our read and
                # our rename: put it back. If yet another lock appeared in that
                # instant we cannot restore it; that window is microseconds.
                with contextlib.suppress(FileExistsError, FileNotFoundError):
                    os.link(aside, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(aside)

    def _held_message(self, holder: LockHolder | None) -> str:
        if holder is None:
            return (
                f"{self.what} is locked by an unreadable lock file {self.path}; "
                "if no backup is running, remove it"
            )
        return (
            f"{self.what} is locked by {holder.describe()}; wait for it or, "
            f"if that process is gone, remove {self.path}"
        )


def _write_new(path: Path, content: str) -> None:
    """Create `path` (must not exist) as 0600 with `content`, flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # explicit: O_CREAT's mode is filtered by umask
        handle.write(content.encode())
        handle.flush()
        # Durable before it becomes visible as the lock: after a crash an empty
        # lock file would block everyone for `stale_after`.
        os.fsync(handle.fileno())


def _printable(text: str, limit: int = 80) -> str:
    """Holder fields come from a file anyone with store access can write; keep them inert."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned[:limit] + "…" if len(cleaned) > limit else cleaned
