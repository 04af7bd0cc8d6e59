"""Error classes, each with the exit code cron and monitoring can rely on.

A ZachotError's message is one line that says what is wrong and what to do.
Task wrappers print it and exit with its code; no traceback reaches the operator.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the task ran and something failed
    USAGE = 2  # bad input: inventory, host name, --from, arguments
    PARTIAL = 3  # several hosts, some failed
    UNREACHABLE = 4  # connect failed, timed out or auth refused
    HOST_KEY = 5  # unknown or changed host key
    LOCKED = 75  # EX_TEMPFAIL: someone else holds the lock; try later


class ZachotError(Exception):
    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        # One line only: multi-line messages break cron mails and log greps.
        super().__init__(" ".join(str(message).split("\n")))

    @property
    def message(self) -> str:
        return str(self)


class UsageError(ZachotError):
    exit_code = ExitCode.USAGE


class InventoryError(UsageError):
    def __init__(self, path: object, key: str, problem: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else f"{path}"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")
        self.path, self.key, self.problem, self.line = path, key, problem, line


class UnknownHostError(UsageError):
    def __init__(self, name: str, known: list[str]) -> None:
        names = ", ".join(known) or "(none)"
        super().__init__(f"unknown host or group {name!r}; known names: {names}")
        self.name, self.known = name, known


class BadSelectorError(UsageError):
    """A --from value that is not 'latest', a backup id or a unique id prefix."""


class BackupNotFoundError(ZachotError):
    pass


class ConnectError(ZachotError):
    exit_code = ExitCode.UNREACHABLE


class HostKeyError(ZachotError):
    exit_code = ExitCode.HOST_KEY


class RemoteCommandError(ZachotError):
    pass


class FactError(RemoteCommandError):
    """A fact's command exited with a code that is not one of its answers."""


class TransferError(ZachotError):
    pass


def local_write_error(path: object, exc: OSError) -> TransferError:
    """Our own disk failed (full, read-only) under a transfer: said as such, not as the link."""
    return TransferError(
        f"cannot write {path} on this machine: {exc.strerror or exc}; nothing was kept. "
        "Free space there or point store.path elsewhere"
    )


class LockHeldError(ZachotError):
    exit_code = ExitCode.LOCKED


class StoreError(ZachotError):
    pass


class SudoError(ZachotError):
    pass
