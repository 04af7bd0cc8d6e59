"""backup.env/units/logs/all: pull backups into the operator's store."""

from __future__ import annotations

from datetime import UTC, datetime

from invoke import task

from ..core import plan as plans
from ..core.backups.planner import back_up, context_for, plan_backup, store_locks
from ..core.runner import finish, first_call, for_each_host, guarded, load, target_hosts

HELP = {
    "dry_run": "print the plan and change nothing",
    "parallel": "back up this many hosts at once (default: config backup.parallel)",
    "full": "logs: send every file, not only what the store lacks",
    "logs": "also back up the logs",
}


def _help(*names: str) -> dict[str, str]:
    return {name: HELP[name] for name in names}


def _run(c, task_name: str, kinds: list[str], *, full=False, parallel=None, dry_run=False):
    if not first_call(task_name):
        return
    hosts = target_hosts(c, load(c))
    now = datetime.now(UTC)
    password = c.config.get("sudo", {}).get("password")
    if dry_run:
        plans.show([plan_backup(context_for(h, now), kinds, full=full) for h in hosts])
        return
    workers = int(parallel or c.config.backup.parallel)
    with store_locks(hosts, purpose=task_name):
        outcomes = for_each_host(
            hosts,
            lambda h: back_up(context_for(h, now, sudo_password=password), kinds, full=full),
            title=f"{task_name} summary",
            parallel=workers,
        )
    finish(outcomes)


@task(help=_help("dry_run"))
@guarded
def env(c, dry_run=False):
    """Back up the env file into the store and beside it on the server (0600)."""
    _run(c, "backup.env", ["env"], dry_run=dry_run)


@task(help=_help("dry_run"))
@guarded
def units(c, dry_run=False):
    """Back up the systemd units and drop-ins; report drift from the repo's copies."""
    _run(c, "backup.units", ["units"], dry_run=dry_run)


@task(help=_help("full", "dry_run"))
@guarded
def logs(c, full=False, dry_run=False):
    """Stream the logs into the store; only new and changed files unless --full."""
    _run(c, "backup.logs", ["logs"], full=full, dry_run=dry_run)


@task(name="all", help=_help("logs", "full", "parallel", "dry_run"))
@guarded
def all_(c, logs=False, full=False, parallel=None, dry_run=False):
    """Back up env and units (and logs with --logs) of every -H host, one connection each."""
    kinds = ["env", "units"] + (["logs"] if logs else [])
    _run(c, "backup.all", kinds, full=full, parallel=parallel, dry_run=dry_run)
