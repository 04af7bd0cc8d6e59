"""The weekly routine as one run: its steps, its one exit code, and its record in the store.

The steps are the runbook's weekly job, each the existing task: backup.all, the off-site
copy, prune, verify. A failing step does not stop the later ones (verify still says what
the store holds), except that prune is skipped when the backup or the off-site copy
failed: deleting old copies is wrong the week the new ones did not land. The routine's
exit code is that of its first failing step.

The record, `<store>/.routine.json` (0600, written to a temp name and renamed), keeps the
last run and the last success per -H pattern; `backup.cron --show` prints it and
`backup.routine --if-overdue` reads it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from invoke.exceptions import Exit

from . import atomic
from .errors import ExitCode, ZachotError
from .manifest import format_utc, parse_utc
from .store import ROUTINE_NAME

MAX_RECORD = 1024 * 1024


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], None]  # a task's body: returns, or raises Exit(code) / ZachotError
    needs: tuple[str, ...] = ()  # steps that must have succeeded for this one to run


@dataclass(frozen=True)
class StepResult:
    name: str
    exit_code: int | None  # None: skipped
    seconds: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_steps(steps: Sequence[Step]) -> list[StepResult]:
    results: list[StepResult] = []
    for step in steps:
        failed_needs = [r.name for r in results if r.name in step.needs and not r.ok]
        if failed_needs:
            note = f"skipped: {', '.join(failed_needs)} failed"
            results.append(StepResult(step.name, None, 0.0, note))
            continue
        started = time.monotonic()
        try:
            step.run()
            code = 0
        except Exit as exc:
            code = int(exc.code or 0)
        except ZachotError as exc:
            code = int(exc.exit_code)
        results.append(StepResult(step.name, code, time.monotonic() - started))
    return results


def exit_code(results: Sequence[StepResult]) -> int:
    return next((r.exit_code for r in results if r.exit_code), int(ExitCode.OK))


@dataclass(frozen=True)
class Run:
    hosts: str  # the -H pattern the routine ran for
    started: datetime
    ended: datetime | None
    exit_code: int | None  # None while running (or killed)
    steps: tuple[StepResult, ...] = ()

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else (self.ended - self.started).total_seconds()

    def as_json(self) -> dict[str, object]:
        return {
            "hosts": self.hosts,
            "started": format_utc(self.started),
            "ended": format_utc(self.ended) if self.ended else None,
            "exit_code": self.exit_code,
            "steps": [asdict(s) for s in self.steps],
        }

    @classmethod
    def from_json(cls, data: dict) -> Run:
        steps = tuple(
            StepResult(str(s["name"]), s["exit_code"], float(s["seconds"]), str(s["note"]))
            for s in data["steps"]
        )
        ended = parse_utc(data["ended"]) if data["ended"] else None
        code = data["exit_code"]
        if code is not None and type(code) is not int:
            raise ValueError(f"exit_code {code!r}")
        return cls(str(data["hosts"]), parse_utc(data["started"]), ended, code, steps)


@dataclass(frozen=True)
class Record:
    """What the store remembers of one -H pattern's routine."""

    last: Run | None = None
    last_success: Run | None = None
    problems: tuple[str, ...] = field(default=())

    def overdue(self, now: datetime, hours: float) -> bool:
        if self.last_success is None or self.last_success.ended is None:
            return True
        return now - self.last_success.ended >= timedelta(hours=hours)


def path(store_root: Path) -> Path:
    return store_root / ROUTINE_NAME


def _read_all(store_root: Path) -> dict[str, dict]:
    try:
        with path(store_root).open("rb") as handle:
            data = json.loads(handle.read(MAX_RECORD))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("routines"), dict):
        raise ValueError("not a routine record")
    return data["routines"]


def load(store_root: Path, hosts: str) -> Record:
    """The record of `hosts`; an unreadable file counts as no record (so: overdue)."""
    try:
        entry = _read_all(store_root).get(hosts)
        if entry is None:
            return Record()
        last = Run.from_json(entry["last"]) if entry.get("last") else None
        good = Run.from_json(entry["last_success"]) if entry.get("last_success") else None
        return Record(last, good)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return Record(problems=(f"{path(store_root)} is unreadable ({exc}); it is rewritten "
                                "by the next run",))  # fmt: skip


def keys(store_root: Path) -> list[str]:
    """The -H patterns the store holds a routine record of."""
    try:
        return sorted(_read_all(store_root))
    except (OSError, ValueError):
        return []


def save(store_root: Path, run: Run) -> None:
    """Record `run` as the last (and, if it succeeded, the last successful) run of its hosts."""
    try:
        routines = _read_all(store_root)
    except (OSError, ValueError):
        routines = {}  # rewritten whole; load() said it was unreadable
    entry = routines.get(run.hosts) if isinstance(routines.get(run.hosts), dict) else {}
    entry = {**entry, "last": run.as_json()}
    if run.exit_code == 0:
        entry["last_success"] = run.as_json()
    routines[run.hosts] = entry
    text = json.dumps({"routines": routines}, indent=2, sort_keys=True) + "\n"
    _write_private(path(store_root), text.encode())


def _write_private(target: Path, data: bytes) -> None:
    os.makedirs(target.parent, mode=0o700, exist_ok=True)  # a first run that backed up nothing
    atomic.write_file(target, data)


def now() -> datetime:
    return datetime.now(UTC)
