"""deploy.rollback and deploy.release through recover(): plan, confirm, lock, run, report.

recover() words a failure for restores (files kept aside, re-run the same command);
a deploy's failure says instead what runs now and what to do, as its steps found it.
"""

from __future__ import annotations

from invoke import Context

from .. import output
from ..errors import ExitCode, ZachotError
from ..recovery import RecoveryFailed, recover
from ..restores.context import RestoreContext
from ..restores.server_options import PipSource
from . import plan as deploy_plan
from .deployment import Deployment


class DeployFailed(ZachotError):
    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def deploy(
    c: Context,
    action: str,
    *,
    to: str | None,
    find_links: str | None,
    yes: bool,
    dry_run: bool,
) -> None:
    made: list[Deployment] = []

    def build(ctx: RestoreContext) -> deploy_plan.Plan:
        # --find-links, else the host's inventory restore.find_links, else pip's index.
        pip = PipSource.parse(None, find_links or ctx.host.restore.find_links, None)
        built, deployment = deploy_plan.plan(ctx, action, to, pip)
        made.append(deployment)
        return built

    try:
        recover(
            c,
            f"deploy.{action}",
            build,
            source=None,
            replaces=False,  # a deploy moves the host's own code; no one else's backups
            yes=yes,
            dry_run=dry_run,
            runbook_rto=deploy_plan.RUNBOOK_RTO,
        )
    except RecoveryFailed as exc:
        if not made or made[0].failure is None:
            raise
        raise DeployFailed(made[0].failure, exc.exit_code) from None
    if made and made[0].outcome:
        output.info(made[0].outcome)
