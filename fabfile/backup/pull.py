"""backup.env/units/logs/all: pull backups into the operator's store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from invoke import task

from ..core import output
from ..core.errors import UsageError
from ..core.runner import Outcome, finish, first_call, for_each_host, guarded, load, target_hosts

HELP = {
    "dry_run": "print the plan and change nothing",
    "parallel": "back up this many hosts at once (default: config backup.parallel)",
    "full": "logs: send every file, not only what the store lacks",
    "logs": "also back up the logs (default: config backup.logs)",
    "redis": "also back up Redis (not recommended by the runbook; needs --yes)",
    "yes": "back up Redis without asking",
    "unattended": "for cron: never prompt, plain text, timestamped start/end lines",
    "offsite": "then send what the off-site box lacks (backup.replicate); the default when "
    "the inventory names backup.offsite_host and config backup.offsite is true",
    "no_offsite": "do not send anything off-site this time",
}


def _switch(given, configured, flag: str) -> bool:
    """A switch's value: the flag when given (bare, or =yes/no), else its config key."""
    if given is None:
        return bool(configured)
    if isinstance(given, bool):
        return given
    words = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
    if given.lower() not in words:
        raise UsageError(f"{flag}={given}: give yes or no, or the flag alone")
    return words[given.lower()]


def _help(*names: str) -> dict[str, str]:
    return {name: HELP[name] for name in names}


def _run(
    c,
    task_name: str,
    kinds: list[str],
    *,
    full=False,
    parallel=None,
    dry_run=False,
    yes=False,
    offsite=False,
    offsite_asked=False,
):
    from ..core import plan as plans
    from ..core.backups.planner import back_up, context_for, plan_backup
    from ..core.offsite_backend import has_offsite
    from ..core.store import store_locks

    if not first_call(task_name):
        return
    inventory = load(c)
    hosts = target_hosts(c, inventory)
    if offsite_asked and (lacking := [h.name for h in hosts if not has_offsite(h)]):
        raise UsageError(
            f"--offsite: {', '.join(lacking)} has no off-site copy configured; set "
            "backup.offsite_host or backup.offsite_s3_bucket in the inventory, or drop --offsite"
        )
    if "redis" in kinds:
        from ..core.backups import redis as redis_backup

        redis_backup.confirm(yes=yes or dry_run)
    now = datetime.now(UTC)
    password = c.config.get("sudo", {}).get("password")
    if dry_run:
        plans.show([plan_backup(context_for(h, now), kinds, full=full) for h in hosts])
        for host in hosts if offsite else []:
            if has_offsite(host):
                output.info(f"then: backup.replicate -H {host.name}")
        return
    workers = int(parallel or c.config.backup.parallel)
    with store_locks(hosts, purpose=task_name):
        outcomes = for_each_host(
            hosts,
            lambda h: back_up(context_for(h, now, sudo_password=password), kinds, full=full),
            title=f"{task_name} summary",
            parallel=workers,
        )
        if offsite:
            # Only hosts whose backup succeeded and that name an off-site box; the vault
            # gets nothing half-made.
            done = [h for h, o in zip(hosts, outcomes, strict=True) if o.ok and has_offsite(h)]
            from ..core.offsite import replicate_hosts

            transfers = int(c.config.backup.offsite_transfers)
            found = replicate_hosts(done, inventory.host, transfers=transfers) if done else []
            sent = {o.host: o for o in found}
            outcomes = [_with_offsite(o, sent.get(o.host)) for o in outcomes]
    finish(outcomes)


def _with_offsite(backup: Outcome, offsite: Outcome | None) -> Outcome:
    if offsite is None:
        return backup
    return replace(
        backup,
        ok=offsite.ok,
        detail=f"{backup.detail}; off-site: {offsite.detail}",
        exit_code=offsite.exit_code,
    )


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


@task(
    name="all",
    help=_help(
        "logs",
        "redis",
        "offsite",
        "no_offsite",
        "yes",
        "full",
        "parallel",
        "dry_run",
        "unattended",
    ),
    # None: not given, so the config decides; a bare --logs / --offsite means yes.
    optional=["logs", "offsite"],
)
@guarded
def all_(
    c, logs=None, redis=False, offsite=None, no_offsite=False, yes=False, full=False,
    parallel=None, dry_run=False, unattended=False,
):  # fmt: skip
    """Back up env and units (and logs with --logs) of every -H host, one connection each."""
    from ..core import unattended as unattended_run

    logs = _switch(logs, c.config.backup.logs, "--logs")
    # Asked for on the command line, an off-site copy must be possible; from config, a host
    # without one is simply skipped.
    given = offsite is not None
    offsite = not no_offsite and _switch(offsite, c.config.backup.offsite, "--offsite")
    asked = offsite and given
    kinds = ["env", "units"] + (["logs"] if logs else []) + (["redis"] if redis else [])

    def body() -> None:
        _run(c, "backup.all", kinds, full=full, parallel=parallel, dry_run=dry_run, yes=yes,
             offsite=offsite, offsite_asked=asked)  # fmt: skip

    if unattended:
        unattended_run.run("backup.all", body)  # what backup.cron's entry runs
    else:
        body()
