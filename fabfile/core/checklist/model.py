"""The checklist's values: what was seen on a host, and the rows judged from it.

Facts are parsed from command output by pure functions (gather.py); rows are
judged from facts by pure functions (the item modules). Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..deploys.history import History

OK, FAIL, NA = "✓", "✗", "–"
STATE_WORDS = {OK: "ok", FAIL: "failed", NA: "n/a"}

# The runbook's checklist, in its order; rows are grouped and sorted by it.
GROUPS = (
    "services",
    "scale",
    "files",
    "code",
    "dependencies",
    "start order",
    "status",
    "logs",
    "endpoints",
)


@dataclass(frozen=True)
class Fix:
    """The exact command an operator runs; `action` names what --guided can run itself."""

    command: str
    # What --guided runs: restore.env|units|redis, deploy.rollback[:<to>], env-perms, start:<role>
    action: str | None = None


@dataclass(frozen=True)
class Row:
    group: str
    item: str
    state: str  # OK, FAIL or NA
    evidence: str
    fix: Fix | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "item": self.item,
            "state": STATE_WORDS[self.state],
            "evidence": self.evidence,
            "fix": self.fix.command if self.fix else None,
        }


@dataclass(frozen=True)
class UnitState:
    name: str
    load: str = "unknown"  # loaded, not-found, bad-setting, error, masked
    active: str = "unknown"  # active, inactive, failed, activating, ...
    sub: str = ""
    file_state: str = ""  # enabled, disabled, static, ...
    need_reload: bool = False
    entered: str = ""  # ActiveEnterTimestamp as systemd prints it
    entered_mono: int = 0  # µs on CLOCK_MONOTONIC; 0 = never active
    restarts: int = 0
    result: str = ""
    after: tuple[str, ...] = ()
    fragment: str = ""

    @property
    def up(self) -> bool:
        return self.active == "active"

    @property
    def crash_looping(self) -> bool:
        return self.active == "failed" or (
            self.active == "activating" and self.sub == "auto-restart"
        )

    @property
    def said(self) -> str:
        return f"{self.active} ({self.sub})" if self.sub else self.active


@dataclass(frozen=True)
class EnvFile:
    present: bool
    mode: str = ""  # octal as stat prints it, e.g. "600"
    owner: str = ""
    group: str = ""
    size: int = 0
    kind: str = ""  # "regular file", "symbolic link", ...
    keys: tuple[str, ...] = ()  # names only: values never leave the server
    readable: bool = True  # False: its directory is closed to us (no sudo)


@dataclass(frozen=True)
class Code:
    commit: str | None
    describe: str | None
    dirty: int | None  # tracked files changed in the checkout; None: unknown
    history: History | None  # None: no history file on the host


@dataclass(frozen=True)
class Pythons:
    system: str | None  # "Python 3.11.2", None when missing
    venv: str | None
    venv_error: str = ""


@dataclass(frozen=True)
class LogFile:
    name: str
    errors: int
    untimed: int
    last: tuple[str, ...]
    truncated: bool
    since: str


@dataclass(frozen=True)
class LogScan:
    files: tuple[LogFile, ...] = ()
    error: str | None = None  # why the logs could not be scanned


@dataclass(frozen=True)
class RedisFacts:
    ok: bool
    detail: str  # "redis 7.0.15" or why not
    workers_alive: int | None = None  # heartbeats newer than dramatiq.heartbeat_timeout
    queues: dict[str, dict[str, int]] = field(default_factory=dict)
    workers_stale: int = 0  # older heartbeats: stopped workers (or producers), not counted

    @property
    def workers_said(self) -> str:
        stale = f", {self.workers_stale} stale" if self.workers_stale else ""
        return f"{self.workers_alive} live worker(s){stale}"


@dataclass(frozen=True)
class BackupInfo:
    kind: str
    id: str
    created: datetime
    deployed: dict[str, Any] | None  # manifest meta["deployed"]: commit, describe
    host: str = ""  # whose backup: a drill judges its target by the source's; "" = the host


@dataclass(frozen=True)
class HostFacts:
    units: dict[str, UnitState]
    env: EnvFile
    code: Code
    python: Pythons
    health: str  # "200", "503", "URLError", ...
    logs: LogScan
    redis: RedisFacts
    backups: dict[str, BackupInfo]
    now: datetime
