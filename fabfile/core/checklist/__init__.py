"""The runbook's recovery checklist as rows: state, item, evidence, and the command that fixes it.

Reading is one SSH connection per host: one script for every section (remote.py)
and one Redis tunnel (gather.py). Judging is pure (evaluate.py and the item
modules). --guided walks the failing items and runs their fixes (guided.py).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from .. import output
from ..model import Host
from ..restores.context import RestoreContext
from ..runner import Outcome, failed
from ..store import Store
from ..transport import Transport
from . import guided
from .report import ChecklistFailed, Report, check

__all__ = ["ChecklistFailed", "Report", "check", "check_hosts", "guide"]

PARALLEL = 8


def _one(host: Host, password: str | None) -> tuple[Outcome, Report | None]:
    started = time.monotonic()
    try:
        with Transport(host, sudo_password=password) as transport:
            report = check(transport)
    except Exception as exc:  # that host's row, expected or not (runner.failed)
        return failed(host.name, exc, time.monotonic() - started), None
    report = replace(report, seconds=time.monotonic() - started)  # connecting included
    try:
        return Outcome(host.name, True, report.verdict(), report.seconds), report
    except ChecklistFailed as exc:
        return Outcome(host.name, False, exc.message, report.seconds, exc.exit_code), report


def check_hosts(hosts: list[Host], *, json: bool, password: str | None = None) -> list[Outcome]:
    """Check every host (in parallel, bounded), then print each table or one JSON document."""
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(hosts)) or 1) as pool:
        results = list(pool.map(lambda h: _one(h, password), hosts))
    if json:
        docs = [
            report.as_json() if report else {"host": o.host, "ok": False, "error": o.detail}
            for o, report in results
        ]
        output.emit_json(docs[0] if len(docs) == 1 else docs)
    else:
        for _, report in results:
            if report is not None:
                report.show()
    return [outcome for outcome, _ in results]


def guide(host: Host, *, yes: bool, health_timeout: float, password: str | None = None) -> Outcome:
    """--guided on one host: fix what fails in runbook order, then check again."""
    started = time.monotonic()
    with Transport(host, sudo_password=password) as transport:
        ctx = RestoreContext(
            host, transport, Store(host.store.path), host.name, health_timeout, origin=host
        )
        try:
            final = guided.walk(ctx, lambda: check(transport), yes=yes)
        finally:
            ctx.close()
    seconds = time.monotonic() - started
    try:
        return Outcome(host.name, True, final.verdict(), seconds)
    except ChecklistFailed as exc:
        return Outcome(host.name, False, exc.message, seconds, exc.exit_code)
