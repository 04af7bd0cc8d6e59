"""Where the routine is scheduled: a systemd user timer, a launchd agent, or the crontab.

The schedule is the inventory's five cron fields (backup.cron_schedule); each back end
gets its own form of it. systemd's timer has Persistent=true, so a run missed while the
machine was off or asleep happens at the next start (`stamp-<timer>` records the last one),
and launchd runs a missed calendar job at wake. Each also gets an at-login catch-up that
runs the routine with --if-overdue: systemd's `OnStartupSec=` of the user manager (which
starts at login), launchd's RunAtLoad. The crontab is the fallback where neither runs.
"""

from __future__ import annotations

import itertools
import os
import plistlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import atomic
from .crontab import CrontabError

KINDS = ("systemd", "launchd", "cron")
UNIT = "zachot-routine"
CATCHUP = "zachot-routine-catchup"
TIMERS = (f"{UNIT}.timer", f"{CATCHUP}.timer")
LABEL = "org.zachot.routine"
CATCHUP_LABEL = "org.zachot.routine-catchup"
CATCHUP_DELAY = "2min"  # after login: let the network come up first
_KEYWORDS = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}  # fmt: skip
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_NAMES = {name.lower(): i for i, name in enumerate(_DAYS)} | {
    m: i + 1 for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))
}  # fmt: skip


class ScheduleError(CrontabError):
    pass


@dataclass(frozen=True)
class Fields:
    """A cron schedule expanded: each field's values, None for `*`."""

    minute: tuple[int, ...] | None
    hour: tuple[int, ...] | None
    day: tuple[int, ...] | None
    month: tuple[int, ...] | None
    weekday: tuple[int, ...] | None  # 0 = Sunday


def parse(schedule: str) -> Fields:
    text = _KEYWORDS.get(schedule.strip(), schedule)
    parts = text.split()
    if len(parts) != len(_RANGES):
        raise ScheduleError(f"{schedule!r} is not a cron schedule (five fields or @weekly)")
    values = [_field(p, low, high, schedule) for p, (low, high) in zip(parts, _RANGES, strict=True)]
    if values[4] is not None:
        values[4] = tuple(sorted({d % 7 for d in values[4]}))
    if values[2] is not None and values[4] is not None:
        # cron runs when either matches; systemd and launchd need both to match.
        raise ScheduleError(f"{schedule!r} restricts both day of month and day of week; "
                            "cron's 'either' cannot be scheduled here; restrict one")  # fmt: skip
    return Fields(*values)


def _field(text: str, low: int, high: int, schedule: str) -> tuple[int, ...] | None:
    if text == "*":
        return None
    found: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                first, last = low, high
            else:
                a, _, b = base.partition("-")
                first = _number(a)
                last = _number(b) if b else (high if step_text else first)
        except ValueError:
            raise ScheduleError(f"{schedule!r}: {item!r} is not a cron field") from None
        if not (low <= first <= last <= high) or step < 1:
            raise ScheduleError(f"{schedule!r}: {item!r} is outside {low}-{high}")
        found.update(range(first, last + 1, step))
    return tuple(sorted(found))


def _number(text: str) -> int:
    return _NAMES[text.lower()] if text.lower() in _NAMES else int(text)


def on_calendar(schedule: str) -> str:
    """systemd.time(7) form: '0 2 * * 0' -> 'Sun *-*-* 02:00:00'."""
    f = parse(schedule)

    def part(values: tuple[int, ...] | None, width: int) -> str:
        return "*" if values is None else ",".join(f"{v:0{width}d}" for v in values)

    days = "" if f.weekday is None else ",".join(_DAYS[d] for d in f.weekday) + " "
    return f"{days}*-{part(f.month, 2)}-{part(f.day, 2)} {part(f.hour, 2)}:{part(f.minute, 2)}:00"


def calendar_intervals(schedule: str) -> list[dict[str, int]]:
    """launchd's StartCalendarInterval: one dict per combination of listed values."""
    f = parse(schedule)
    keys = (("Minute", f.minute), ("Hour", f.hour), ("Day", f.day), ("Month", f.month),
            ("Weekday", f.weekday))  # fmt: skip
    listed = [(k, v) for k, v in keys if v is not None]
    combos = itertools.product(*(v for _, v in listed))
    return [dict(zip((k for k, _ in listed), combo, strict=True)) for combo in combos]


# --- systemd --------------------------------------------------------------------------


def systemd_quote(command: str) -> str:
    """One ExecStart= argument: quoted, with systemd's own `%` and `$` expansion escaped."""
    escaped = command.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("%", "%%").replace("$", "$$") + '"'


def systemd_units(*, schedule: str, command: str, catchup: str) -> dict[str, str]:
    """The service and timer of the routine and of its at-login catch-up."""

    def service(what: str, shell: str) -> str:
        # No network-online.target: a user manager has none; a host it cannot reach yet is
        # the routine's exit 4, pinged, and caught up by --if-overdue.
        head = f"[Unit]\nDescription=zachot {what} (managed by fab backup.cron)\n\n"
        return f"{head}[Service]\nType=oneshot\nExecStart=/bin/sh -c {systemd_quote(shell)}\n"

    def timer(what: str, when: str, unit: str) -> str:
        head = f"[Unit]\nDescription=zachot {what} (managed by fab backup.cron)\n\n"
        return f"{head}[Timer]\n{when}Unit={unit}.service\n\n[Install]\nWantedBy=timers.target\n"

    calendar = on_calendar(schedule)
    return {
        f"{UNIT}.service": service("weekly backup routine", command),
        f"{UNIT}.timer": timer(
            f"weekly backup routine, {schedule}",
            f"OnCalendar={calendar}\n# A run missed while off or asleep happens at the next "
            "start.\nPersistent=true\n",
            UNIT,
        ),
        f"{CATCHUP}.service": service("backup routine catch-up (--if-overdue)", catchup),
        f"{CATCHUP}.timer": timer(
            "backup routine catch-up at login", f"OnStartupSec={CATCHUP_DELAY}\n", CATCHUP
        ),
    }


def systemd_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(config).expanduser().absolute() / "systemd" / "user"


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        said = " ".join(done.stderr.split()) or f"exit {done.returncode}"
        raise ScheduleError(f"`systemctl --user {' '.join(args)}` failed: {said}")
    return done


def systemd_available() -> bool:
    """A user manager answers (not so in containers, over plain ssh without linger, on macOS)."""
    if shutil.which("systemctl") is None:
        return False
    return systemctl("show-environment", check=False).returncode == 0


def install_systemd(units: dict[str, str], folder: Path | None = None) -> None:
    folder = folder or systemd_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        atomic.write_file(folder / name, text.encode(), mode=0o644)
    systemctl("daemon-reload")
    systemctl("enable", "--now", *TIMERS)


def remove_systemd(folder: Path | None = None) -> bool:
    folder = folder or systemd_dir()
    present = [folder / n for n in (f"{UNIT}.service", f"{CATCHUP}.service", *TIMERS)
               if (folder / n).exists()]  # fmt: skip
    if not present:
        return False
    systemctl("disable", "--now", *TIMERS, check=False)
    for unit in present:
        unit.unlink()
    systemctl("daemon-reload")
    return True


def systemd_next_run() -> str | None:
    done = systemctl("show", f"{UNIT}.timer", "-p", "NextElapseUSecRealtime", "--value",
                     check=False)  # fmt: skip
    return done.stdout.strip() or None if done.returncode == 0 else None


# --- launchd --------------------------------------------------------------------------


def launchd_plists(*, schedule: str, command: str, catchup: str, log: Path) -> dict[str, bytes]:
    """The agent that runs the routine on the calendar, and the one that catches up at login."""

    def agent(label: str, shell: str, **when: object) -> bytes:
        data = {"Label": label, "ProgramArguments": ["/bin/sh", "-c", shell],
                "StandardErrorPath": str(log), "ProcessType": "Background", **when}  # fmt: skip
        return plistlib.dumps(data)

    return {
        f"{LABEL}.plist": agent(LABEL, command,
                                StartCalendarInterval=calendar_intervals(schedule)),
        f"{CATCHUP_LABEL}.plist": agent(CATCHUP_LABEL, catchup, RunAtLoad=True),
    }  # fmt: skip


def launchd_dir() -> Path:
    return Path("~/Library/LaunchAgents").expanduser()


def install_launchd(plists: dict[str, bytes]) -> None:
    folder = launchd_dir()
    folder.mkdir(parents=True, exist_ok=True)
    domain = f"gui/{os.getuid()}"
    for name, data in plists.items():
        target = folder / name
        subprocess.run(["launchctl", "bootout", domain, str(target)], capture_output=True)
        target.write_bytes(data)
        done = subprocess.run(["launchctl", "bootstrap", domain, str(target)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise ScheduleError(f"launchctl bootstrap {target} failed: "
                                f"{' '.join(done.stderr.split()) or done.returncode}")  # fmt: skip


def remove_launchd() -> bool:
    folder, removed = launchd_dir(), False
    for name in (f"{LABEL}.plist", f"{CATCHUP_LABEL}.plist"):
        target = folder / name
        if target.exists():
            subprocess.run(["launchctl", "bootout", f"gui/{os.getuid()}", str(target)],
                           capture_output=True)  # fmt: skip
            target.unlink()
            removed = True
    return removed


# --- which one ------------------------------------------------------------------------


def choose(wanted: str | None) -> str:
    """The back end: as asked, else launchd on macOS, systemd where a user manager runs, cron."""
    if wanted and wanted != "auto":
        if wanted not in KINDS:
            raise ScheduleError(f"--scheduler must be auto, {', '.join(KINDS)}; got {wanted!r}")
        return wanted
    if sys.platform == "darwin":
        return "launchd"
    return "systemd" if systemd_available() else "cron"
