"""backup.*: pull backups of env, units and logs into the operator's store."""

from __future__ import annotations

from datetime import UTC, datetime

from invoke import Collection, task

from .core import output
from .core import plan as plans
from .core.backups.planner import back_up, context_for, plan_backup, store_locks
from .core.runner import finish, first_call, for_each_host, guarded, load, target_hosts
from .core.store import Store

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


def _age(created: datetime, now: datetime) -> str:
    seconds = int((now - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@task(name="list", help={"kind": "only this kind: env, units, logs or redis", "json": "as JSON"})
@guarded
def list_(c, kind=None, json=False):
    """Show the backups in the local store: host, kind, id, age, size, verified."""
    hosts = target_hosts(c, load(c), required=False)
    now = datetime.now(UTC)
    refs = [ref for h in hosts for ref in Store(h.store.path).list(host=h.name, kind=kind)]
    rows = [
        {
            "host": r.host,
            "kind": r.kind,
            "id": r.id,
            "age": _age(r.created, now),
            "size": r.size,
            "files": len(r.manifest.files),
            "verified": bool(r.manifest.meta.get("verified", False)),
        }
        for r in refs
    ]
    if json:
        output.emit_json(rows)
        return
    output.table(
        f"Backups in the store ({len(rows)})",
        ["host", "kind", "id", "age", "size", "files", "verified"],
        [
            (*(r[k] for k in ("host", "kind", "id", "age")), _size(r["size"]), r["files"],
             "yes" if r["verified"] else "no")
            for r in rows
        ],
    )  # fmt: skip


ns = Collection("backup", env, units, logs, all_, list_)
ns.configure({"backup": {"parallel": 1}})
