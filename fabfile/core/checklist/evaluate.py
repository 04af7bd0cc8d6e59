"""All rows for one host, in the runbook's checklist order; pure."""

from __future__ import annotations

from .. import services
from ..model import Host
from ..restores.steps import ROLE_NAMES
from . import code, deps, endpoints, files, logs, stack
from .model import FAIL, OK, HostFacts, Row


def evaluate(host: Host, facts: HostFacts) -> list[Row]:
    rest = [
        *files.rows(host, facts),
        code.row(host, facts),
        *deps.rows(host, facts),
        stack.order_row(host, facts),
        *stack.status_rows(host, facts),
        *logs.rows(host, facts),
        *endpoints.rows(host, facts),
    ]
    return [stack.services_row(host, facts), scale_row(host, facts, rest), *rest]


def scale_row(host: Host, facts: HostFacts, rest: list[Row]) -> Row:
    """Which components are down, and what else fails; the fix is the first in runbook order."""
    down = [
        f"{ROLE_NAMES[s.role]} ({why})"
        for s in services.stack(host)
        if (why := stack.problem(facts, s))
    ]
    failing = [r for r in rest if r.state == FAIL]
    others = [r.item for r in failing if r.group not in ("status", "start order")]
    said = [f"down: {'; '.join(down)}" if down else "every component is up"]
    said += [f"also failing: {', '.join(others)}"] if others else []
    if not (down or failing):
        return Row("scale", "scale of the problem", OK, said[0])
    first = next((r.fix for r in failing if r.fix), None)
    return Row("scale", "scale of the problem", FAIL, "; ".join(said), first)


def failed(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.state == FAIL]


def summary(rows: list[Row]) -> str:
    ok = sum(r.state == OK for r in rows)
    bad = len(failed(rows))
    return f"{ok} ✓, {bad} ✗, {len(rows) - ok - bad} –"
