"""Running a recovery on one host: plan, show, confirm, lock, execute, report.

Every recovery task goes through recover(); the steps come from
fabfile/core/restores/. Re-running after a failure is safe: steps whose work is
already there are skipped, and replaced files were kept as *.pre-restore.*.
"""

from __future__ import annotations

from collections.abc import Callable

from invoke import Context

from . import plan as plans
from .errors import ExitCode, UsageError, ZachotError
from .remote_lock import RemoteLock
from .restores.context import RestoreContext
from .runner import confirm, first_call, load, target_hosts
from .store import Store
from .transport import Transport


def recover(
    c: Context,
    task_name: str,
    build: Callable[[RestoreContext], plans.Plan],
    *,
    source: str | None,
    yes: bool,
    dry_run: bool,
    runbook_rto: str,
) -> None:
    if not first_call(task_name):
        return
    inventory = load(c)
    hosts = target_hosts(c, inventory)
    if len(hosts) != 1:
        names = ", ".join(h.name for h in hosts)
        raise UsageError(f"{task_name} recovers one host at a time; -H gave {names}")
    host = hosts[0]
    origin = inventory.host(source) if source else host
    password = c.config.get("sudo", {}).get("password")
    with Transport(host, sudo_password=password) as transport:
        ctx = RestoreContext(
            host,
            transport,
            Store(origin.store.path),
            origin.name,
            health_timeout=float(c.config.restore.health_timeout),
            origin=origin,
        )
        try:
            plan = build(ctx)
            plans.show([plan], dry_run=dry_run)
            if dry_run:
                return
            confirm(f"Run these {len(plan.steps)} steps on {host.name}?", yes=yes)
            with RemoteLock(transport, task_name):
                execute_recovery(ctx, plan, runbook_rto)
        finally:
            ctx.close()


def execute_recovery(ctx: RestoreContext, plan: plans.Plan, runbook_rto: str) -> None:
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
        ) from None
    plans.report(plan, results, target=runbook_rto)


class RecoveryFailed(ZachotError):
    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code
