"""The host's deploy history, like Capistrano's revisions.log: one JSON line per deploy.

Every release and rollback appends a line: when, what, which commit replaced which,
who ran it and how it ended. A line may mark a commit bad: the one a rollback left,
or a release that failed. Rollbacks skip bad commits, as Deployer skips bad
releases, until a successful deploy of that commit (which must be named) clears it.
Pure: parsing, rendering and reading the history; the I/O is in remote.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields

ACTIONS = ("release", "rollback")
RESULTS = ("ok", "failed")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}", re.ASCII)


@dataclass(frozen=True)
class Entry:
    time: str  # ISO-8601 UTC
    action: str  # release or rollback
    ref: str  # what was deployed, as the operator named it or the tag chosen
    commit: str  # the commit checked out
    previous: str | None  # the commit that ran before
    operator: str  # user@machine that ran the task
    result: str  # ok or failed
    bad: str | None = None  # the commit this deploy marks bad
    step: str | None = None  # the step a failed deploy stopped at

    def line(self) -> str:
        """One JSON line (no newline inside: json escapes them)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        said = f"{self.time} {self.action} {self.ref} ({self.commit[:12]})"
        if self.previous:
            said += f" replacing {self.previous[:12]}"
        said += f" by {self.operator}: {self.result}"
        if self.step:
            said += f" at {self.step}"
        return said + (f"; marks {self.bad[:12]} bad" if self.bad else "")


def entry_from(data: object) -> Entry:
    """An Entry from one decoded line; ValueError says what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    known = {f.name for f in fields(Entry)}
    values = {k: v for k, v in data.items() if k in known}  # newer fields are ignored
    values.setdefault("previous", None)
    for name in ("time", "action", "ref", "commit", "operator", "result"):
        if not isinstance(values.get(name), str) or not values[name]:
            raise ValueError(f"no {name}")
    for name in ("previous", "bad", "step"):
        if values.get(name) is not None and not isinstance(values[name], str):
            raise ValueError(f"{name} is not a string")
    for name in ("commit", "previous", "bad"):
        if values.get(name) is not None and not _COMMIT.fullmatch(values[name]):
            raise ValueError(f"{name} is not a full commit id")
    if values["action"] not in ACTIONS:
        raise ValueError(f"action {values['action']!r} is not one of {', '.join(ACTIONS)}")
    if values["result"] not in RESULTS:
        raise ValueError(f"result {values['result']!r} is not one of {', '.join(RESULTS)}")
    return Entry(**values)


@dataclass(frozen=True)
class History:
    entries: tuple[Entry, ...] = ()
    problems: tuple[str, ...] = ()  # lines that were skipped, and why

    def bad(self) -> dict[str, Entry]:
        """Commits marked bad now, each with the entry that marked it."""
        marked: dict[str, Entry] = {}
        for entry in self.entries:
            if entry.result == "ok":
                marked.pop(entry.commit, None)  # deployed by name and healthy again
            if entry.bad:
                marked[entry.bad] = entry
        return marked

    def in_flight(self, head: str) -> Entry | None:
        """The last deploy, if it failed with its commit still checked out."""
        last = self.entries[-1] if self.entries else None
        return last if last and last.result == "failed" and last.commit == head else None

    def live_before(self, head: str, target: str) -> str:
        """The commit a deploy of target replaces: HEAD, or, when a failed deploy of
        target is being retried, the commit that ran before that one."""
        flight = self.in_flight(head)
        if flight and flight.commit == target and flight.previous:
            return flight.previous
        return head

    def last(self, count: int) -> tuple[Entry, ...]:
        return self.entries[-count:] if count > 0 else ()


def parse(text: str) -> History:
    entries, problems = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            entries.append(entry_from(json.loads(raw)))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            problems.append(f"line {number} is not a deploy record ({exc}); skipped")
    return History(tuple(entries), tuple(problems))
