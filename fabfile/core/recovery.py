"""Running a recovery on one host: plan, show, confirm, lock, execute, report.

Every recovery task goes through recover(); the steps come from
fabfile/core/restores/. Re-running after a failure is safe: steps whose work is
already there are skipped, and replaced files were kept as *.pre-restore.*.
The pieces (one_host, restore_context, run_recovery) also serve tasks that do
more around a recovery on the same connection, like drill.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from invoke import Context

from . import plan as plans
from .errors import ExitCode, UsageError, ZachotError
from .inventory import Inventory
from .model import Host
from .remote_lock import RemoteLock
from .restores.context import RestoreContext
from .runner import confirm, first_call, load, target_hosts
from .store import Store
from .transport import Transport

Build = Callable[[RestoreContext], plans.Plan]
HEALTH_TIMEOUT = 60.0  # seconds; restore.health_timeout in the config overrides it


def recover(
    c: Context,
    task_name: str,
    build: Build,
    *,
    source: str | None,
    yes: bool,
    dry_run: bool,
    runbook_rto: str,
    force: bool = False,
    replaces: bool = True,
) -> None:
    """`replaces`: without --source, restore the backups of the host the inventory says
    this one replaces (restores do; deploys do not)."""
    if not first_call(task_name):
        return
    inventory = load(c)
    host = one_host(c, inventory, task_name)
    origin, said = origin_of(inventory, host, source) if replaces else (host, "")

    def noted(ctx: RestoreContext) -> plans.Plan:
        built = build(ctx)
        return replace(built, title=f"{built.title}; {said}") if said else built

    with restore_context(c, host, origin, force=force) as ctx:
        run_recovery(ctx, task_name, noted, yes=yes, dry_run=dry_run, runbook_rto=runbook_rto)


def origin_of(inventory: Inventory, host: Host, source: str | None) -> tuple[Host, str]:
    """Whose backups to restore: --source, else the host the inventory says `host` replaces,
    else its own; and, for the plan, a note when the inventory chose it."""
    if source:
        return inventory.host(source), ""  # the plan's title names it already
    if host.replaces:
        if host.replaces == host.name:
            raise UsageError(f"{host.name}: the inventory says it replaces itself; fix replaces:")
        said = f"source {host.replaces} (inventory: {host.name} replaces {host.replaces})"
        return inventory.host(host.replaces), said
    return host, ""


def one_host(c: Context, inventory: Inventory, task_name: str) -> Host:
    """The single host -H names; a recovery never runs on several at once."""
    hosts = target_hosts(c, inventory)
    if len(hosts) != 1:
        names = ", ".join(h.name for h in hosts)
        raise UsageError(f"{task_name} recovers one host at a time; -H gave {names}")
    return hosts[0]


@contextmanager
def restore_context(
    c: Context, host: Host, origin: Host, *, force: bool = False
) -> Iterator[RestoreContext]:
    """One connection to `host`, restoring `origin`'s backups; the workdir is removed after."""
    password = c.config.get("sudo", {}).get("password")
    restore = c.config.get("restore", {})
    with Transport(host, sudo_password=password) as transport:
        ctx = RestoreContext(
            host,
            transport,
            Store(origin.store.path),
            origin.name,
            health_timeout=float(restore.get("health_timeout", HEALTH_TIMEOUT)),
            origin=origin,
            force=force,
        )
        try:
            yield ctx
        finally:
            ctx.close()


def run_recovery(
    ctx: RestoreContext,
    task_name: str,
    build: Build,
    *,
    yes: bool,
    dry_run: bool,
    runbook_rto: str,
    question: str | None = None,
) -> list[plans.StepResult]:
    """Build and show the plan; unless dry_run, confirm, lock the host and execute it.

    Returns the timed results (none on a dry run); a failed step raises RecoveryFailed.
    """
    plan = build(ctx)
    plans.show([plan], dry_run=dry_run)
    if dry_run:
        return []
    confirm(question or f"Run these {len(plan.steps)} steps on {ctx.host.name}?", yes=yes)
    with RemoteLock(ctx.transport, task_name):
        return execute_recovery(ctx, plan, runbook_rto)


def execute_recovery(
    ctx: RestoreContext, plan: plans.Plan, runbook_rto: str
) -> list[plans.StepResult]:
    try:
        results = plans.execute(plan)
    except plans.StepFailed as failure:
        plans.report(plan, failure.results, target=runbook_rto)
        what = failure.message.rstrip(".")
        raise RecoveryFailed(
            f"{what}. The steps before it are done; files replaced so far were kept as "
            f"*.pre-restore.{ctx.stamp}. Fix the cause and re-run the same command: "
            "finished steps are skipped",
            failure.exit_code,
            plan,
            failure.results,
        ) from None
    plans.report(plan, results, target=runbook_rto)
    return results


class RecoveryFailed(ZachotError):
    def __init__(
        self,
        message: str,
        exit_code: ExitCode,
        plan: plans.Plan | None = None,
        results: list[plans.StepResult] | None = None,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        # What ran before the failure (the failed step last), for callers that report it.
        self.plan, self.results = plan, results or []
