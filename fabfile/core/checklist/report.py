"""One host's checklist: read, judge, show as a table or JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .. import output
from ..errors import ZachotError
from ..model import Host
from ..transport import Transport
from .evaluate import evaluate, failed, summary
from .gather import host_facts
from .model import Row


class ChecklistFailed(ZachotError):
    """Some item is ✗; the table above says which and how to fix it."""


@dataclass(frozen=True)
class Report:
    host: str
    rows: list[Row]
    seconds: float

    @property
    def ok(self) -> bool:
        return not failed(self.rows)

    @property
    def title(self) -> str:
        return f"{self.host}: recovery checklist — {summary(self.rows)} ({self.seconds:.1f} s)"

    def show(self) -> None:
        rows = [
            (r.state, r.group, r.item, r.evidence, r.fix.command if r.fix else "")
            for r in self.rows
        ]
        output.table(self.title, ["", "group", "item", "evidence", "fix"], rows)

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "items": [r.as_json() for r in self.rows],
        }

    def verdict(self) -> str:
        """One line for a multi-host summary; raises when something failed."""
        if self.ok:
            return summary(self.rows)
        names = ", ".join(r.item for r in failed(self.rows) if r.group != "scale")
        raise ChecklistFailed(f"{self.host}: {summary(self.rows)}: {names}")


def check(transport: Transport, *, record: Host | None = None) -> Report:
    started = time.monotonic()
    rows = evaluate(transport.host, host_facts(transport, record))
    return Report(transport.host.name, rows, time.monotonic() - started)
