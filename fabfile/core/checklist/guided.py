"""checklist --guided: walk the runbook's order and offer the fix at each failing item.

Every fix is a plan run through the same machinery as the restore tasks (show,
confirm, host lock, timed steps, report): restore.env/units/redis and
deploy.rollback use their own plan builders; the env file's owner and mode and
the ordered restart are small plans built from the restores' steps. After each
fix the host is read again, so later items see what the fix changed. A fix
that fails is reported and the walk goes on; the final check says what is
still wrong.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import output
from .. import plan as plans
from ..deploys import plan as deploy_plan
from ..errors import UsageError, ZachotError
from ..plan import Plan, Step
from ..recovery import execute_recovery
from ..remote_lock import RemoteLock
from ..restores import env as env_restore
from ..restores import redis as redis_restore
from ..restores import steps
from ..restores import units as units_restore
from ..restores.context import RestoreContext
from ..restores.server_options import PipSource
from ..runner import confirm
from .model import FAIL, GROUPS, Fix, Row
from .report import Report

# The first two items assess (which services run, how big the problem is); fixes start after.
ASSESS = ("services", "scale")
# Without these no start can pass its gate: a fix by hand here ends the walk.
PREREQUISITES = ("code", "dependencies")
ROLES = ("redis", "worker", "api")


def env_perms(ctx: RestoreContext) -> Plan:
    layout = ctx.host.layout
    owner = f"{layout.service_user}:{layout.service_user}"

    def run() -> str:
        # On the file's own descriptor: a link planted in its place is refused, not followed.
        user = layout.service_user
        ctx.transport.set_owner(layout.env_file, mode=0o600, owner=user, group=user)
        return f"{layout.env_file} is 0600 {owner}"

    step = Step(
        "env-perms",
        "give the env file its owner and mode back",
        (f"chown {owner} {layout.env_file}", f"chmod 0600 {layout.env_file}"),
        run=run,
    )
    return Plan(ctx.host.name, "fix the env file's owner and mode", (step,))


def restart_from(ctx: RestoreContext, role: str) -> Plan:
    roles = ROLES[ROLES.index(role) :]
    return Plan(
        ctx.host.name,
        f"start the services in order from {steps.ROLE_NAMES[role]}",
        (steps.stop(ctx, roles), steps.start(ctx, roles)),
    )


def build(ctx: RestoreContext, action: str) -> tuple[Plan, str]:
    """The plan for a Fix.action and the runbook's time for it."""
    builders: dict[str, Callable[[], tuple[Plan, str]]] = {
        "restore.env": lambda: (env_restore.plan(ctx, "latest"), env_restore.RUNBOOK_RTO),
        "restore.units": lambda: (units_restore.plan(ctx, "latest"), units_restore.RUNBOOK_RTO),
        "restore.redis": lambda: (redis_restore.plan(ctx, None), redis_restore.RUNBOOK_RTO),
        "env-perms": lambda: (env_perms(ctx), ""),
    }
    kind, _, arg = action.partition(":")
    if kind == "start":
        return restart_from(ctx, arg), ""
    if kind == "deploy.rollback":
        pip = PipSource.parse(None, None, None)
        return deploy_plan.plan(ctx, "rollback", arg or None, pip)[0], deploy_plan.RUNBOOK_RTO
    return builders[action]()


def next_failing(report: Report, group: str, tried: set[str]) -> Row | None:
    return next(
        (
            r
            for r in report.rows
            if r.group == group and r.state == FAIL and r.fix and r.fix.command not in tried
        ),
        None,
    )


def walk(ctx: RestoreContext, check: Callable[[], Report], *, yes: bool) -> Report:
    """Offer each failing item's fix in runbook order; return the final check."""
    report = check()
    report.show()
    tried: set[str] = set()
    for group in (g for g in GROUPS if g not in ASSESS):
        while (row := next_failing(report, group, tried)) is not None:
            assert row.fix is not None
            tried.add(row.fix.command)
            output.info(f"✗ {group}: {row.item}: {row.evidence}")
            if apply(ctx, row.fix, yes=yes):
                report = check()
            elif group in PREREQUISITES and row.fix.action is None:
                output.warn(
                    "stopping here: the services cannot start until this is fixed by hand; "
                    "then run the checklist --guided again"
                )
                return _final(check)
    return _final(check)


def _final(check: Callable[[], Report]) -> Report:
    final = check()
    final.show()
    return final


def apply(ctx: RestoreContext, fix: Fix, *, yes: bool) -> bool:
    """Run one fix; True when something ran (even if it failed), so the host is read again."""
    if fix.action is None:
        output.info(f"  fix by hand: {fix.command}")
        return False
    try:
        plan, rto = build(ctx, fix.action)
        output.info(f"  fix: {fix.command}")
        plans.show([plan], dry_run=False)
        try:
            confirm(f"Run these {len(plan.steps)} steps on {ctx.host.name}?", yes=yes)
        except UsageError as exc:
            output.info(f"  skipped: {exc.message}")
            return False
        with RemoteLock(ctx.transport, f"checklist {fix.action}"):
            execute_recovery(ctx, plan, rto)
    except ZachotError as exc:
        output.error(exc.message)
    return True
