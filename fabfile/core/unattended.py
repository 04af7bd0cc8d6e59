"""What an unattended (cron) run means, and reading its log back.

An unattended run never prompts (stdin is /dev/null, so a confirmation fails
with its one-line error instead of waiting), prints plain text (NO_COLOR: no
colour, no progress bars, tab-separated tables), brackets its output with
timestamped start/end lines, and exits with the task's non-zero code on
failure. The log file itself is the shell redirect of the crontab line.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from invoke.exceptions import Exit

from . import output
from .runner import first_call, guarded

_END = re.compile(r"^(?P<at>\S+) (?P<task>\S+) end: exit (?P<code>-?\d+)")
_START = re.compile(r"^(?P<at>\S+) (?P<task>\S+) start\b")
TAIL_BYTES = 64 * 1024


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


@contextmanager
def _plain_and_silent() -> Iterator[None]:
    saved_color, saved_stdin = os.environ.get("NO_COLOR"), sys.stdin
    os.environ["NO_COLOR"] = "1"
    with open(os.devnull) as nothing:
        sys.stdin = nothing
        try:
            yield
        finally:
            sys.stdin = saved_stdin
            if saved_color is None:
                os.environ.pop("NO_COLOR", None)
            else:
                os.environ["NO_COLOR"] = saved_color


def run(task_name: str, body: Callable[[], None]) -> None:
    """Run body unattended: start line, body (errors as one line), end line with exit code.

    Fabric calls a task once per -H host; only the first call runs (runner.first_call).
    """
    if not first_call(f"{task_name} --unattended"):
        return
    with _plain_and_silent():
        output.info(f"{_now()} {task_name} start (pid {os.getpid()})")
        started, code = time.monotonic(), 0
        try:
            guarded(body)()
        except Exit as exc:
            code = exc.code
            raise
        except BaseException:
            code = 1
            raise
        finally:
            took = time.monotonic() - started
            output.info(f"{_now()} {task_name} end: exit {code} after {took:.1f} s")


@dataclass(frozen=True)
class LastRun:
    started: str | None  # timestamp of the last start line
    ended: str | None  # timestamp of its end line; None while running or if killed
    exit_code: int | None


def last_run(lines: list[str]) -> LastRun | None:
    """The last run recorded in a log's lines, or None when it records none."""
    for i in range(len(lines) - 1, -1, -1):
        if end := _END.match(lines[i]):
            start = next((m for ln in reversed(lines[:i]) if (m := _START.match(ln))), None)
            return LastRun(start and start["at"], end["at"], int(end["code"]))
        if start := _START.match(lines[i]):
            return LastRun(start["at"], None, None)
    return None


def tail(path: Path, *, max_bytes: int = TAIL_BYTES) -> list[str]:
    """The last lines of a log, reading at most max_bytes from its end."""
    with path.open("rb") as log:
        size = log.seek(0, os.SEEK_END)
        log.seek(max(0, size - max_bytes))
        data = log.read()
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > max_bytes and lines else lines  # first may be cut
