"""What GNU tar captured from a live directory, read from its verbose listing and warnings.

Logs are written and rotated while tar walks them. tar is run with `-vv --full-time --utc
--numeric-owner --quoting-style=escape` under LC_ALL=C, so every member it wrote is one
listing line with the size and mtime it stat'ed (the member holds exactly that many bytes),
and every complaint is one `tar: <name>: <what>` line. Names are escape-quoted (newlines,
backslashes, colons in complaints and non-ASCII bytes are escaped), so one line is one event.

This module is pure: the caller runs tar and hands over its stderr and exit status. The
names are the service user's data: they are matched against the names we asked for, never
used to decide anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..agent import TRAILER

TAR_FLAGS = (
    "--verbose", "--verbose", "--full-time", "--utc", "--numeric-owner",
    "--quoting-style=escape",
    # A hard link is stored as its own bytes, so every member is a plain file.
    "--hard-dereference",
    # A file rotated away between the listing and the read is a warning, not a failure.
    "--ignore-failed-read",
)  # fmt: skip
EXIT_MARK = "zachot-tar-exit "  # printed by the wrapper after tar, with tar's exit status

LISTED = re.compile(
    r"(?P<type>[-a-zA-Z])\S{9} \d+/\d+ +(?P<size>[\d,]+) "
    r"(?P<stamp>(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(?P<ns>\d{1,9}))?)(?P<tail> .*)"
)
# tar pads the time stamp to the widest one it has printed so far (list.c, datewidth),
# so where the name starts depends on the lines before: parse() keeps that width too.
DATE_WIDTH = len("YYYY-MM-DD HH:MM")
COMPLAINT = re.compile(r"tar: (?P<name>(?:[^\\:]|\\.)+): (?P<what>.*)")
SHRANK = re.compile(r"File shrank by (\d+) bytes?; padding with zeros")
GONE = re.compile(r"(?:Warning: )?Cannot (?:stat|open): No such file or directory")
DENIED = re.compile(r"(?:Warning: )?Cannot (?:stat|open): Permission denied")
CHANGED = "file changed as we read it"
NOT_REGULAR = "no longer regular files when tar read them"
ESCAPES = {"n": 10, "t": 9, "a": 7, "b": 8, "f": 12, "r": 13, "v": 11}


@dataclass(frozen=True)
class Captured:
    size: int  # bytes in the archive: the size tar stat'ed
    mtime: float


@dataclass
class TarReport:
    exit_code: int | None = None
    captured: dict[bytes, Captured] = field(default_factory=dict)  # regular members
    grew: set[bytes] = field(default_factory=set)  # written to while read: cut where tar stat'ed
    # Asked for and not archived, or archived damaged (so not indexed): why, phrased to
    # follow a count ("skipped 2 rotated away before tar read them: a, b").
    skipped: dict[bytes, str] = field(default_factory=dict)
    partial: dict[bytes, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # anything else: the backup failed

    @property
    def ok(self) -> bool:
        """tar says 0, or 1 (files differ) with every complaint one we understood."""
        return not self.problems and self.exit_code in (0, 1)


def unquote(text: str) -> bytes:
    """Undo tar's escape quoting: \\\\, \\n and friends, \\ooo octal, \\: in complaints."""
    out = bytearray()
    i = 0
    raw = text.encode("utf-8", "surrogateescape")
    while i < len(raw):
        c = raw[i]
        if c != 0x5C or i + 1 == len(raw):
            out.append(c)
            i += 1
            continue
        nxt = chr(raw[i + 1])
        if nxt in "01234567" and re.fullmatch(rb"[0-7]{3}", raw[i + 1 : i + 4]):
            out.append(int(raw[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            out.append(ESCAPES.get(nxt, raw[i + 1]))
            i += 2
    return bytes(out)


def parse(stderr: bytes, asked: list[bytes]) -> TarReport:
    """Read tar's listing and complaints (our wrapper's exit mark last) for the names asked."""
    report = TarReport()
    wanted = set(asked)
    width = DATE_WIDTH
    for line in stderr.decode("utf-8", "surrogateescape").splitlines():
        if line.startswith(EXIT_MARK):
            report.exit_code = int(line.removeprefix(EXIT_MARK).strip() or -1)
        elif member := LISTED.fullmatch(line):
            width = max(width, len(member["stamp"]))
            pad = width - len(member["stamp"])
            if member["tail"][: pad + 1].strip():
                report.problems.append(f"tar's listing is not as expected: {line}")
            _member(report, member, member["tail"][pad + 1 :], wanted)
        elif complaint := COMPLAINT.fullmatch(line):
            _complaint(report, unquote(complaint["name"]), complaint["what"], wanted)
        elif line.strip() and not line.startswith(TRAILER):
            report.problems.append(line.strip())
    if report.exit_code is None:
        report.problems.append("tar did not report how it ended")
    elif report.exit_code > 1:
        report.problems.append(f"tar exited {report.exit_code}")
    return report


def _member(report: TarReport, m: re.Match[str], rest: str, wanted: set[bytes]) -> None:
    if m["type"] == "-":
        name = unquote(rest)
        when = datetime.strptime(m["when"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        nanos = int((m["ns"] or "0").ljust(9, "0")[:9])
        report.captured[name] = Captured(int(m["size"]), when.timestamp() + nanos / 1e9)
        return
    # A link or a directory now stands where a regular file was listed: archived as that,
    # not as the file. Its listing line is `name -> target` (or `name link to target`).
    for sep in (" -> ", " link to ", ""):
        name = unquote(rest.split(sep, 1)[0] if sep else rest)
        if name in wanted:
            report.skipped[name] = NOT_REGULAR
            return
    report.problems.append(f"tar archived something not asked for: {rest}")


def _complaint(report: TarReport, name: bytes, what: str, wanted: set[bytes]) -> None:
    if name not in wanted:
        report.problems.append(f"{name.decode('utf-8', 'replace')}: {what}")
    elif what == CHANGED:
        report.grew.add(name)
    elif GONE.fullmatch(what):
        report.skipped[name] = "rotated away before tar read them"
    elif what == "socket ignored":  # swapped for a socket after the listing
        report.skipped[name] = NOT_REGULAR
    elif DENIED.fullmatch(what):
        report.skipped[name] = "unreadable when tar read them"
    elif SHRANK.fullmatch(what):
        report.partial[name] = "truncated while tar read them (copytruncate), zero-padded"
    else:
        report.problems.append(f"{name.decode('utf-8', 'replace')}: {what}")
