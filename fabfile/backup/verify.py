"""backup.verify: is the newest backup of each kind there, intact, fresh and restorable?"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from invoke import task

from ..core import output
from ..core.errors import UsageError
from ..core.model import Host
from ..core.output import human_age, human_size
from ..core.runner import first_call, guarded, load, target_hosts

if TYPE_CHECKING:
    from ..core.drill import LastDrill
    from ..core.offsite import OffsiteState
    from ..core.readback import ReadBackRow
    from ..core.verify import KindReport

RESULT = {"ok": "ok", "failed": "FAILED", "missing": "MISSING", "absent": "–"}


def _checks_cell(report: KindReport) -> str:
    parts = []
    for result in report.results:
        part = result.name if result.ok else f"{result.name} FAILED"
        note = result.verdict.note
        parts.append(f"{part} ({note})" if note else part)
    return ", ".join(parts) or "-"


def show(reports: list[KindReport]) -> None:
    rows = [
        (
            r.host,
            r.kind,
            r.newest.id if r.newest else "-",
            human_age(r.newest.created, r.now) if r.newest else "-",
            _checks_cell(r),
            RESULT[r.status],
        )
        for r in reports
    ]
    output.table("Backup verification", ["host", "kind", "newest", "age", "checks", "result"], rows)
    for report in reports:
        for result in report.results:
            for warning in result.verdict.warnings:
                output.warn(f"{report.host}/{report.kind}: {result.name}: {warning}")
        for problem in report.problems:
            output.error(f"{report.host}/{report.kind}: {problem}")


def show_offsite(states: list[OffsiteState], *, verbose: bool = False) -> None:
    if states:
        shown = states if verbose else summarised(states)
        rows = [(s.host, s.kind, s.id, s.remote, "ok" if s.ok else "FAILED", s.detail)
                for s in shown]  # fmt: skip
        columns = ["host", "kind", "id", "on vault", "result", "detail"]
        output.table("Off-site copies", columns, rows)


def summarised(states: list[OffsiteState]) -> list[OffsiteState]:
    """Every failed row; of the ok ones, the newest per host and kind, counting the rest
    ("and 11 older present"), so the table does not grow with history."""
    from ..core.manifest import id_sort_key, is_backup_id

    ok: dict[tuple[str, str], list[OffsiteState]] = {}
    for state in states:
        if state.ok:
            ok.setdefault((state.host, state.kind), []).append(state)
    newest = {
        key: max(group, key=lambda s: id_sort_key(s.id) if is_backup_id(s.id) else ("", 0))
        for key, group in ok.items()
    }
    shown = []
    for state in states:
        group = ok.get((state.host, state.kind), [])
        if not state.ok:
            shown.append(state)
        elif state is newest[(state.host, state.kind)]:
            more = f"; and {len(group) - 1} older present" if len(group) > 1 else ""
            shown.append(dataclasses.replace(state, detail=f"{state.detail}{more}"))
    return shown


def last_drills(hosts: list[Host], reports: list[KindReport]) -> list[tuple[str, LastDrill | None]]:
    """Each host that has backups, with its newest drill report (None: never drilled)."""
    from ..core.drill import last as last_drill
    from ..core.store import Store

    backed_up = {r.host for r in reports if r.newest is not None}
    return [(h.name, last_drill(Store(h.store.path), h.name)) for h in hosts if h.name in backed_up]


def show_drills(drills: list[tuple[str, LastDrill | None]]) -> None:
    for host, drill in drills:
        if drill is None:
            output.info(f"{host}: last drill: never (fab -H <scratch host> drill --source {host})")
        else:
            result = "pass" if drill.passed else "fail"
            when = drill.finished.strftime("%Y-%m-%d %H:%M UTC")
            output.info(f"{host}: last drill: {when} ({result}) onto {drill.target}")


def _offsite_json(state: OffsiteState) -> dict[str, object]:
    return {"offsite": True, **dataclasses.asdict(state)}


def show_read_back(rows: list[ReadBackRow]) -> None:
    if rows:
        output.table(
            "Older backups read back this run (read back longest ago first, within the budget)",
            ["host", "where", "kind", "id", "size", "result", "detail"],
            [(r.host, r.where, r.kind, r.id, human_size(r.size), "ok" if r.ok else "FAILED",
              r.detail) for r in rows],
        )  # fmt: skip


def read_back_older(
    hosts: list[Host],
    find: Callable[[str], Host],
    reports: list[KindReport],
    offsite: list[OffsiteState],
    *,
    budget: int | None,
    count: int | None,
    kinds: tuple[str, ...],
    now: datetime,
) -> list[ReadBackRow]:
    """The rolling part: a budget's share of each host's older backups, local and off-site."""
    from ..core.readback import MIB, newest_read_backs, rolling_read_back

    rows = []
    for host in hosts:
        local = [(r.newest, r.restorable) for r in reports if r.host == host.name and r.newest]
        remote = [(s.kind, s.id, s.ok) for s in offsite
                  if s.host == host.name and s.remote == "complete"]  # fmt: skip
        done = newest_read_backs(local, remote, now)
        share = int(host.backup.read_budget_mib * MIB) if budget is None else budget
        most = host.backup.read_count if count is None else count
        rows += rolling_read_back(
            host, find, budget=share, count=most, kinds=kinds, done=done, now=now
        )
    return rows


HELP = {
    "kind": "only this kind: env, units, logs or redis",
    "json": "the result as JSON",
    "verbose": "list every off-site copy checked, not only the newest per kind and a count",
    "read_budget": "bytes of older backups to read back this run, local and off-site, e.g. "
    "64MiB (default: the inventory's backup.read_budget_mib; 0: none)",
    "read_count": "at most this many older backups read back this run (default: the "
    "inventory's backup.read_count; 0: none)",
}


@task(help=HELP)
@guarded
def verify(c, kind=None, json=False, read_budget=None, read_count=None, verbose=False):
    """Check the newest backups (checksums, age, a test restore) and, in rotation, a share of
    the older ones; exit 1 if anything fails."""
    from ..core.manifest import KINDS
    from ..core.offsite import newest_offsite
    from ..core.readback import parse_budget, parse_count
    from ..core.verify import VerificationFailed, verify_host

    if not first_call("backup.verify"):
        return
    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    budget = None if read_budget is None else parse_budget(read_budget)
    count = None if read_count is None else parse_count(read_count)
    inventory = load(c)
    hosts = target_hosts(c, inventory, required=False)
    now = datetime.now(UTC)
    kinds = (kind,) if kind else KINDS
    reports = [report for h in hosts for report in verify_host(h, kinds, now=now)]
    offsite = newest_offsite(hosts, inventory.host, kinds)
    older = read_back_older(
        hosts, inventory.host, reports, offsite, budget=budget, count=count, kinds=kinds, now=now
    )
    drills = last_drills(hosts, reports)
    if json:
        rows = [r.as_json() for r in reports] + [_offsite_json(s) for s in offsite]
        rows += [r.as_json() for r in older]
        output.emit_json(rows + [d.as_json() for _, d in drills if d is not None])
    else:
        show(reports)
        show_offsite(offsite, verbose=verbose)
        show_read_back(older)
        show_drills(drills)
    failed = [f"{r.host}/{r.kind}" for r in reports if r.failed]
    # One off-site entry per host/kind, however many of its backups are damaged there.
    failed += dict.fromkeys(f"{s.host}/{s.kind} off-site" for s in offsite if not s.ok)
    failed += [f"{r.host}/{r.kind} {r.id} ({r.where}, read back)" for r in older if not r.ok]
    checked = len(reports) + len({(s.host, s.kind) for s in offsite}) + len(older)
    if failed:
        raise VerificationFailed(
            f"{len(failed)} of {checked} checks failed verification: {', '.join(failed)}"
        )
