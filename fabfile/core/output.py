"""Everything the toolkit prints goes through here, masked.

People get rich tables, colour and progress bars; scripts (no TTY, NO_COLOR,
--json) get plain text or JSON on stdout. Errors go to stderr as one line. rich loads only
when a terminal shows it: it is a tenth of every `fab` start.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from .secrets import mask

if TYPE_CHECKING:
    from rich.console import Console

# C0 controls but \t and \n, DEL, and C1 controls (8-bit CSI/OSC): a server's text (log
# lines, file names, stderr) must never drive the operator's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@functools.cache
def _console(err: bool) -> Console:
    from rich.console import Console

    return Console(stderr=err, highlight=False, soft_wrap=True)


def clean(text: str) -> str:
    """Masked, with control characters shown as escapes (ESC as \\x1b): safe to print."""
    return controls_escaped(mask(text))


def controls_escaped(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _fancy(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def _line(err: bool, text: str, label: str = "", colour: str = "") -> None:
    """One line, already cleaned: coloured through rich on a terminal, else plain."""
    stream = sys.stderr if err else sys.stdout
    if not _fancy(stream):
        print(f"{label} {text}" if label else text, file=stream, flush=True)
        return
    from rich.markup import escape

    _console(err).print((f"[{colour}]{label}[/] " if label else "") + escape(text))


def info(message: str) -> None:
    _line(False, clean(message))


def info_unmasked(message: str) -> None:
    """A line printed as the server sent it (hosts.exec --raw), control characters escaped."""
    _line(False, controls_escaped(message))


def warn(message: str) -> None:
    _line(True, clean(message), "warning:", "yellow")


def error(message: str) -> None:
    _line(True, clean(message), "error:", "red")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    if not _fancy(sys.stdout):
        # Plain, tab-separated: what cut, awk and cron mail handle best.
        print(clean(title))
        print("\t".join(columns))
        for row in rows:
            print("\t".join(_cell(c) for c in row))
        sys.stdout.flush()
        return
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(clean(title)), box=box.SIMPLE_HEAVY, title_justify="left")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*(escape(_cell(c)) for c in row))
    _console(False).print(t)


def _cell(value: Any) -> str:
    return clean("" if value is None else str(value))


def emit_json(data: Any) -> None:
    # ensure_ascii (the default) writes every control character as \uXXXX, never raw.
    print(mask(json.dumps(data, indent=2, sort_keys=True, default=str)))
    sys.stdout.flush()


@contextmanager
def progress(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield advance(n). A bar with bytes and rate on a TTY, silence otherwise; one bar at a
    time (rich allows one live display), so other threads' transfers go silent meanwhile."""
    if not _fancy(sys.stderr) or not _one_bar.acquire(blocking=False):
        yield lambda n: None
        return
    try:
        yield from _bar(label, total)
    finally:
        _one_bar.release()


_one_bar = threading.Lock()


def _bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_console(True),
        transient=True,
    )
    with bar:
        task_id = bar.add_task(escape(clean(label)), total=total)
        yield lambda n: bar.advance(task_id, n)


def human_age(created: datetime, now: datetime) -> str:
    """3d, 5h, 12m, 40s: how long ago, for tables."""
    seconds = int((now - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
