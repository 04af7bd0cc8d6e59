"""backup.verify: is the newest backup of each kind there, intact, fresh and restorable?"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from invoke import task

from ..core import output
from ..core.errors import UsageError
from ..core.manifest import KINDS
from ..core.offsite import OffsiteState, newest_offsite
from ..core.output import human_age
from ..core.runner import first_call, guarded, load, target_hosts
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
    if json:
        output.emit_json([r.as_json() for r in reports] + [_offsite_json(s) for s in offsite])
    else:
        show(reports)
        show_offsite(offsite)
    failed = [f"{r.host}/{r.kind}" for r in reports if r.failed]
    failed += [f"{s.host}/{s.kind} off-site" for s in offsite if not s.ok]
    if failed:
        raise VerificationFailed(
            f"{len(failed)} of {len(reports)} backups failed verification: {', '.join(failed)}"
        )
