"""Our one crontab entry: render it, find it, replace or remove it in crontab text.

The text half is pure: every line outside our marked block is kept byte for
byte, so an operator's own entries survive any number of installs and removes.
The last section holds the only I/O: the `crontab` program (the operator's
entry) and a host's /etc/cron.d file (the runbook's env snapshot on the server).

cron turns an unescaped `%` in a command into a newline (crontab(5)), so every
`%` in a command we write is escaped as `\\%`; cron removes the backslash again.
"""

from __future__ import annotations

import difflib
import posixpath
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ZachotError

if TYPE_CHECKING:  # annotations only: `fab` loads this module for every task
    from .transport import CommandResult, Transport

BEGIN = "# >>> zachot backup.cron: managed by `fab backup.cron`; edit with --install/--remove >>>"
END = "# <<< zachot backup.cron <<<"
SERVER_FILE = "/etc/cron.d/zachot-env-backup"
_KEYWORD = re.compile(r"@[a-z]+")
_FIELDS = 5


class CrontabError(ZachotError):
    pass


@dataclass(frozen=True)
class Entry:
    schedule: str
    command: str  # as the shell gets it: `\%` already turned back into `%`


# --- text (pure) ---------------------------------------------------------------


def _lines(text: str) -> list[str]:
    # cron splits on "\n" only; keep each ending so joining gives the bytes back.
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def _check_one_line(what: str, value: str) -> None:
    if not value or "\n" in value or "\r" in value or "\0" in value:
        raise CrontabError(f"{what} must be one non-empty line, got {value!r}")


def escape_percent(command: str) -> str:
    return command.replace("%", "\\%")


def unescape_percent(command: str) -> str:
    r"""What cron hands to the shell: `\%` becomes `%`; an unescaped `%` ends the command."""
    out, i = [], 0
    while i < len(command):
        if command.startswith("\\%", i):
            out.append("%")
            i += 2
        elif command[i] == "%":
            break
        else:
            out.append(command[i])
            i += 1
    return "".join(out)


def job_command(
    *,
    project: Path,
    fab: Path,
    inventory: Path,
    hosts: str,
    log: Path,
    task: str = "backup.all --unattended",
) -> str:
    """The shell command of a scheduled job (any scheduler): `task` (backup.cron installs
    backup.routine) of these hosts and inventory, from this project, appending to the log."""
    q = shlex.quote
    return (
        f"cd {q(str(project))} && ZACHOT_INVENTORY={q(str(inventory))} "
        f"{q(str(fab))} -H {q(hosts)} {task} >> {q(str(log))} 2>&1"
    )


def cron_line(schedule: str, command: str, *, user: str | None = None) -> str:
    """One crontab line (user field for /etc/cron.d files), `%` escaped, no newline."""
    _check_one_line("the schedule", schedule)
    _check_one_line("the command", command)
    if not (_KEYWORD.fullmatch(schedule) or len(schedule.split()) == _FIELDS):
        raise CrontabError(f"{schedule!r} is not a cron schedule (five fields or @weekly)")
    who = f"{user} " if user else ""
    return f"{schedule} {who}{escape_percent(command)}"


def render_block(schedule: str, command: str) -> str:
    return f"{BEGIN}\n{cron_line(schedule, command)}\n{END}\n"


@dataclass(frozen=True)
class _Blocks:
    lines: list[str]
    spans: list[tuple[int, int]]  # [first, last] line indexes of each of our blocks


def _blocks(text: str) -> _Blocks:
    lines = _lines(text)
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for i, line in enumerate(lines):
        mark = line.strip()
        if mark == BEGIN:
            if start is not None:
                raise _malformed(f"line {start + 1} opens a zachot block that line {i + 1} reopens")
            start = i
        elif mark == END:
            if start is None:
                raise _malformed(f"line {i + 1} closes a zachot block that was never opened")
            spans.append((start, i))
            start = None
    if start is not None:
        raise _malformed(f"line {start + 1} opens a zachot block that is never closed")
    return _Blocks(lines, spans)


def _malformed(where: str) -> CrontabError:
    return CrontabError(
        f"the crontab's zachot markers are broken ({where}); "
        "fix or delete those lines with `crontab -e`, then retry"
    )


def install(text: str, block: str) -> str:
    """text with our block replaced by block (in place), or added at the end."""
    found = _blocks(text)
    if not found.spans:
        glue = "" if not text or text.endswith("\n") else "\n"  # crontab needs a final newline
        return text + glue + block
    first = found.spans[0][0]
    # Several blocks (a hand-merged crontab) are all ours: the first is replaced, the rest go.
    kept = [line for i, line in enumerate(found.lines) if not _inside(i, found.spans)]
    before = [line for i, line in enumerate(found.lines[:first]) if not _inside(i, found.spans)]
    return "".join(before) + block + "".join(kept[len(before) :])


def remove(text: str) -> str:
    """text without our block(s); every other line as it was."""
    found = _blocks(text)
    return "".join(line for i, line in enumerate(found.lines) if not _inside(i, found.spans))


def _inside(index: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(first <= index <= last for first, last in spans)


def entry(text: str) -> Entry | None:
    """The job line of our block, or None when there is no block."""
    found = _blocks(text)
    if not found.spans:
        return None
    first, last = found.spans[0]
    for line in found.lines[first + 1 : last]:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return _parse_line(stripped)
    return None


def _parse_line(line: str) -> Entry:
    if line.startswith("@"):
        schedule, _, command = line.partition(" ")
    else:
        parts = line.split(None, _FIELDS)
        schedule, command = " ".join(parts[:_FIELDS]), (parts[_FIELDS:] or [""])[0]
    return Entry(schedule, unescape_percent(command.strip()))


def log_path(command: str) -> str | None:
    """Where a job command appends its output (the word after `>>`), if it says."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i, word in enumerate(words[:-1]):
        if word == ">>":
            return words[i + 1]
    return None


def diff(old: str, new: str, *, what: str) -> str:
    """A unified diff of two crontab texts, for --dry-run; "" when they are equal."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{what} (now)",
        tofile=f"{what} (after)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def server_file(
    *, schedule: str, env_file: str, backup_dir: str, name: str, managed_by: str
) -> str:
    """The runbook's weekly env snapshot as an /etc/cron.d file: 0600 copies, umask 077.

    Root runs it unattended beside files the service user controls, so: the copy is
    written only inside backup_dir entered with `cd -P` and checked to be the very path,
    owned by the running user (root) and 0700; it is created with noclobber through
    ./name; the env file is read by dd without following a link or blocking on a FIFO,
    and at most 16 MiB of it."""
    q = shlex.quote
    where = q(backup_dir)
    target = q(f"./{name}.") + '"$(date +%Y%m%d_%H%M%S)"'
    refuse = f"{{ echo {q(backup_dir + ' must be root-owned 0700')} >&2; exit 1; }}"
    read = f"dd if={q(env_file)} iflag=nofollow,nonblock,fullblock bs=1M count=16 status=none"
    # A failed copy is removed, so a half-written snapshot never looks like a backup.
    command = (
        f"umask 077 && mkdir -p -m 0700 -- {where} && cd -P -- {where} && "
        f'{{ [ "$(pwd -P)" = {where} ] && [ "$(stat -c %u:%a .)" = "$(id -u):700" ] || {refuse}; }}'
        f' && t={target} && set -C && {{ {read} > "$t" || {{ rm -f -- "$t"; exit 1; }}; }}'
    )
    return (
        f"# zachot: weekly snapshot of {env_file} into {backup_dir} (0600 copies).\n"
        f"# Managed by `{managed_by}`; changes here are overwritten.\n"
        "SHELL=/bin/sh\n"
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
        f"{cron_line(schedule, command, user='root')}\n"
    )


# --- where the text lives (I/O) -------------------------------------------------


@dataclass(frozen=True)
class UserCrontab:
    """A user's crontab through the `crontab` program; None is the user running us."""

    user: str | None = None

    def _run(self, *args: str, text: str | None = None) -> subprocess.CompletedProcess[bytes]:
        binary = shutil.which("crontab")
        if binary is None:
            raise CrontabError(
                "the `crontab` program is missing; install cron (Debian: sudo apt-get install cron)"
            )
        argv = [binary, *(["-u", self.user] if self.user else []), *args]
        data = None if text is None else text.encode("utf-8", "surrogateescape")
        return subprocess.run(argv, input=data, capture_output=True, check=False)

    def read(self) -> str:
        """The crontab's text; "" when the user has none."""
        done = self._run("-l")
        said = done.stderr.decode("utf-8", "replace")
        if done.returncode != 0:
            if "no crontab for" in said:
                return ""
            raise CrontabError(f"`crontab -l` failed: {_one_line(said, done.returncode)}")
        return done.stdout.decode("utf-8", "surrogateescape")

    def write(self, text: str) -> None:
        done = self._run("-", text=text)
        if done.returncode != 0:
            said = _one_line(done.stderr.decode("utf-8", "replace"), done.returncode)
            raise CrontabError(f"crontab refused the new table ({said}); nothing was changed")


def _one_line(said: str, code: int) -> str:
    return "; ".join(ln.strip() for ln in said.splitlines() if ln.strip()) or f"exit {code}"


def read_server_file(transport: Transport, path: str = SERVER_FILE) -> str | None:
    """The cron file's text on the host, or None when there is none."""
    done = _if_present(transport, "cat", path, "read")
    return None if done is None else done.stdout


def _if_present(transport: Transport, command: str, path: str, doing: str) -> CommandResult | None:
    """Run `command -- path` with sudo; None when there is no such file."""
    script = f'if [ -e "$1" ]; then {command} -- "$1"; else exit 3; fi'
    done = transport.run(["sh", "-c", script, "sh", path], sudo=True, check=False)
    if done.exit_code == 3:
        return None
    if not done.ok:
        last = (done.stderr.strip().splitlines() or [f"exit {done.exit_code}"])[-1]
        raise CrontabError(f"{transport.host.name}: cannot {doing} {path}: {last}")
    return done


def write_server_file(transport: Transport, text: str, path: str = SERVER_FILE) -> None:
    """Install text at path, 0644 root:root (cron ignores group- or world-writable files)."""
    name = transport.host.name
    folder = posixpath.dirname(path)
    if not transport.run(["test", "-d", folder], sudo=True, check=False).ok:
        raise CrontabError(f"{name}: no {folder}; install cron there (sudo apt-get install cron)")
    with tempfile.TemporaryDirectory(prefix="zachot-cron-") as tmp:
        local = Path(tmp) / "cron"
        local.write_text(text)
        transport.push(local, path, mode=0o644, owner="root", group="root", sudo=True)


def remove_server_file(transport: Transport, path: str = SERVER_FILE) -> bool:
    """Delete the cron file; False when it was not there."""
    return _if_present(transport, "rm -f", path, "remove") is not None
