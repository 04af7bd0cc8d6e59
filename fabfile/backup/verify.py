"""backup.verify: is the newest backup of each kind there, intact, fresh and restorable?"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from invoke import task

from ..core import output
from ..core.drill import LastDrill
from ..core.drill import last as last_drill
from ..core.errors import UsageError
from ..core.manifest import KINDS
from ..core.model import Host
from ..core.offsite import OffsiteState, newest_offsite
from ..core.output import human_age
from ..core.runner import first_call, guarded, load, target_hosts
from ..core.store import Store
from ..core.verify import KindReport, VerificationFailed, verify_host

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


def show_offsite(states: list[OffsiteState]) -> None:
    if states:
        rows = [(s.host, s.kind, s.id, s.remote, "ok" if s.ok else "FAILED", s.detail)
                for s in states]  # fmt: skip
        columns = ["host", "kind", "id", "on vault", "result", "detail"]
        output.table("Off-site copies", columns, rows)


def last_drills(hosts: list[Host], reports: list[KindReport]) -> list[tuple[str, LastDrill | None]]:
    """Each host that has backups, with its newest drill report (None: never drilled)."""
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


@task(help={"kind": "only this kind: env, units, logs or redis", "json": "the result as JSON"})
@guarded
def verify(c, kind=None, json=False):
    """Check the newest backups (checksums, age, a test restore); exit 1 if anything fails."""
    if not first_call("backup.verify"):
        return
    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    inventory = load(c)
    hosts = target_hosts(c, inventory, required=False)
    now = datetime.now(UTC)
    kinds = (kind,) if kind else KINDS
    reports = [report for h in hosts for report in verify_host(h, kinds, now=now)]
    offsite = newest_offsite(hosts, inventory.host, kinds)
    drills = last_drills(hosts, reports)
    if json:
        rows = [r.as_json() for r in reports] + [_offsite_json(s) for s in offsite]
        output.emit_json(rows + [d.as_json() for _, d in drills if d is not None])
    else:
        show(reports)
        show_offsite(offsite)
        show_drills(drills)
    failed = [f"{r.host}/{r.kind}" for r in reports if r.failed]
    # One off-site entry per host/kind, however many of its backups are damaged there.
    failed += dict.fromkeys(f"{s.host}/{s.kind} off-site" for s in offsite if not s.ok)
    checked = len(reports) + len({(s.host, s.kind) for s in offsite})
    if failed:
        raise VerificationFailed(
            f"{len(failed)} of {checked} checks failed verification: {', '.join(failed)}"
        )
