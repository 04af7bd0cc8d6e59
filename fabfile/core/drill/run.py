"""A drill end to end: refuse, restore through restore.server's plan, check, time, write down."""

from __future__ import annotations

from datetime import UTC, datetime

from invoke import Context

from .. import output
from ..checklist import Report, check
from ..errors import UsageError, ZachotError
from ..manifest import KINDS
from ..model import Host
from ..offsite_fetch import Fetched
from ..plan import Plan
from ..recovery import RecoveryFailed, one_host, origin_of, restore_context, run_recovery
from ..restores import server as server_restore
from ..restores.context import RestoreContext
from ..restores.server_options import Options, PipSource, wanted_ref
from ..runner import first_call, load
from ..store import BackupRef, Store
from . import guard, history
from .report import BackupAge, Drill, step_times

TASK = "drill"
RESTORED_KINDS = ("env", "units")  # what restore.server puts on the box


class DrillFailed(ZachotError):
    """The restore failed or the checklist found a ✗; the report says which."""

    def __init__(self, message: str, drill: Drill | None = None) -> None:
        super().__init__(message)
        self.drill = drill


def drill(
    c: Context,
    *,
    source: str | None,
    wheelhouse: str | None,
    find_links: str | None,
    index_url: str | None,
    yes: bool,
    dry_run: bool,
) -> Drill | None:
    """The drill's report (None on a dry run); a failed drill raises DrillFailed with it."""
    if not first_call(TASK):
        return None
    inventory = load(c)
    target = one_host(c, inventory, TASK)
    if not source and not target.replaces:
        raise UsageError(
            "name the host whose backups the drill restores: --source <host>, or set "
            f"replaces: <host> on {target.name} in the inventory"
        )
    origin, said = origin_of(inventory, target, source)
    guard.check(target, origin, [h.name for h in inventory.hosts.values() if h.scratch])
    if said:
        output.info(f"Drill: {said}")
    # force: the target is scratch by definition, so an earlier drill's zachot there is
    # expected; restore.server stops it and brings it to the source's latest backups.
    options = Options(
        pip=PipSource.for_host(target, wheelhouse, find_links, index_url),
        force=True,
        dry_run=dry_run,
    )
    store = Store(origin.store.path)
    started = datetime.now(UTC)
    built: list[Plan] = []
    restored: list[BackupRef] = []
    unusable: list[str] = []
    fetches: list[Fetched] = []

    def build(ctx: RestoreContext) -> Plan:
        try:
            # The laptop lost too: what the store lacks comes from the off-site copy first.
            plan, fetched = server_restore.plan_fetching(ctx, options, inventory.host)
            fetches.extend([fetched] if fetched else [])
            if not dry_run:  # a dry run fetched nothing: its plan is the fetch itself
                restored.extend(ctx.store.resolve(ctx.source, k, "latest") for k in RESTORED_KINDS)
        except ZachotError as exc:
            unusable.append(exc.message)  # e.g. no backup, or a damaged one: a failed drill
            raise
        built.append(plan)
        return plan

    with restore_context(c, target, origin) as ctx:
        question = f"Drill: overwrite scratch host {target.name} with {origin.name}'s backups?"
        try:
            results = run_recovery(
                ctx, TASK, build, yes=yes, dry_run=dry_run,
                runbook_rto=server_restore.RUNBOOK_RTO, question=question,
            )  # fmt: skip
            failure = None
        except RecoveryFailed as exc:
            results, failure = exc.results, exc.message
        except ZachotError:
            if not unusable or dry_run:
                raise  # not the backups: connecting, the lock, no --yes; nothing to report
            results, failure = [], f"cannot plan the restore: {unusable[0]}"
        if dry_run:
            where = store.drills_dir(origin.name)
            output.info(
                f"then: run the checklist on {target.name} (read-only) and write the report "
                f"to {where}/<UTC id>.md and .json"
            )
            return None
        # Nothing restored: the box still shows whatever was there before, so do not judge it.
        checklist, checklist_error = _checklist(ctx, origin) if built else (None, None)
    done = {(r.kind, r.id) for r in restored}
    # The RPO: what the store held as the restore began (after any fetch), not what a backup
    # made since added.
    newest = [(kind, _newest(store, origin.name, kind, started)) for kind in KINDS]
    fetched = fetches[0] if fetches else None
    result = Drill(
        id=history.free_id(store, origin.name, started.strftime("%Y%m%dT%H%M%SZ")),
        source=origin.name,
        target=target.name,
        started=started,
        finished=datetime.now(UTC),
        steps=step_times(built[0] if built else None, results, fetched),
        rto_target=server_restore.RUNBOOK_RTO,
        backups=tuple(
            BackupAge.of(
                kind, ref, ref is not None and (kind, ref.id) in done, origin.backup.max_age_days
            )
            for kind, ref in newest
        ),
        checklist=checklist,
        restore_error=failure,
        checklist_error=checklist_error,
        code=_code(restored),
        pip=options.pip.describe(),
        fetched=fetched,
    )
    _finish(store, result)
    return result


def _checklist(ctx: RestoreContext, origin: Host) -> tuple[Report | None, str | None]:
    """The checklist on the target, judged against the source's backups (read-only)."""
    try:
        report = check(ctx.transport, record=origin)
    except ZachotError as exc:
        return None, exc.message
    report.show()
    return report, None


def _newest(store: Store, host: str, kind: str, before: datetime) -> BackupRef | None:
    """The newest backup of `kind` made before the drill began (a fetched one included)."""
    made = [ref for ref in store.list(host, kind) if ref.created <= before]
    return made[-1] if made else None


def _code(restored: list[BackupRef]) -> str:
    if not restored:
        return ""
    wanted = wanted_ref(None, restored)
    return f"{wanted.ref[:12]}, {wanted.why}"


def _finish(store: Store, drill: Drill) -> None:
    """Print the summary, write the report, and exit 1 on a failed drill."""
    output.table(
        f"Backups of {drill.source} at drill time (RPO)",
        ["kind", "id", "age", "max age", "restored"],
        drill.backup_rows(),
    )
    output.info(f"Measured RTO: {drill.rto_line()}")
    if drill.steps and len(drill.skipped) == len(drill.steps):
        output.warn(
            f"{drill.target} already held exactly these backups (an earlier drill), so this "
            f"measured no restore; reset {drill.target} for a whole rebuild"
        )
    if drill.rto_within is False:
        output.warn(f"the restore took longer than the runbook's {drill.rto_target}")
    md, js = history.save(store, drill)
    output.info(f"Drill {drill.id}: {drill.verdict}; report: {md} and {js.name}")
    if not drill.passed:
        raise DrillFailed(
            f"drill {drill.id} of {drill.source} onto {drill.target} failed: "
            f"{'; '.join(drill.failures)}; report: {md}",
            drill,
        )
