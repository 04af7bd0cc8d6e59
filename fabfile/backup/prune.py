"""backup.prune: forget old backups by the retention policy, in the store and on the server."""

from __future__ import annotations

from invoke import task

from ..core import output
from ..core.errors import UsageError
from ..core.manifest import KINDS
from ..core.model import Host
from ..core.prune import KindPrune, ServerPrune, prune_server_safely, prune_store
from ..core.retention import Policy
from ..core.runner import finish, first_call, for_each_host, guarded, load, target_hosts

HELP = {
    "kind": "only this kind: env, units, logs or redis",
    "keep_last": "keep the newest N (default: the inventory's backup.keep_last)",
    "keep_daily": "keep the newest of each of the last N days with a backup",
    "keep_weekly": "keep the newest of each of the last N weeks with a backup",
    "keep_monthly": "keep the newest of each of the last N months with a backup",
    "yes": "really delete; without it this is a dry run",
    "dry_run": "only show what would be pruned (the default)",
}


def _count(name: str, value: object) -> int | None:
    if value is None:
        return None
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if number < 0:
        raise UsageError(f"--{name.replace('_', '-')} must be a whole number >= 0, got {value!r}")
    return number


def _show_store(host: Host, policy: Policy, results: list[KindPrune], *, apply: bool) -> None:
    verb = "Pruned" if apply else "Would prune"
    rows = []
    for result in results:
        for decision in result.decisions:
            if not decision.keep:
                output.info(f"{verb} {host.name}/{result.kind}/{decision.id}")
            action = "keep" if decision.keep else ("deleted" if apply else "prune")
            created = decision.created.strftime("%Y-%m-%d %H:%M %Z")
            rows.append((result.kind, decision.id, created, action, ", ".join(decision.reasons)))
    output.table(
        f"{host.name}: store {host.store.path} (keep {policy.describe()})",
        ["kind", "backup", "created", "action", "why"],
        rows,
    )


def _show_server(host: Host, server: ServerPrune, *, apply: bool) -> None:
    verb = "Pruned" if apply else "Would prune"
    for name in server.forget:
        output.info(f"{verb} {host.name}:{server.directory}/{name}")
    keep_last = host.backup.server_keep_last
    rows = [(name, "keep", f"newest {keep_last}") for name in server.keep]
    rows += [(name, "deleted" if apply else "prune", "") for name in server.forget]
    output.table(
        f"{host.name}: server env copies in {server.directory}", ["copy", "action", "why"], rows
    )


@task(help=HELP)
@guarded
def prune(
    c,
    kind=None,
    keep_last=None,
    keep_daily=None,
    keep_weekly=None,
    keep_monthly=None,
    yes=False,
    dry_run=False,
):
    """Forget old backups like restic (last/daily/weekly/monthly); a dry run unless --yes."""
    if not first_call("backup.prune"):
        return
    if yes and dry_run:
        raise UsageError("--yes deletes and --dry-run does not; give one of them")
    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    overrides = {
        "keep_last": _count("keep_last", keep_last),
        "keep_daily": _count("keep_daily", keep_daily),
        "keep_weekly": _count("keep_weekly", keep_weekly),
        "keep_monthly": _count("keep_monthly", keep_monthly),
    }
    hosts = target_hosts(c, load(c))
    kinds = (kind,) if kind else KINDS
    apply = bool(yes)
    password = c.config.get("sudo", {}).get("password")

    def work(host: Host) -> str:
        policy = Policy.from_settings(host.backup, **overrides)
        if policy.empty:
            output.warn(f"{host.name}: the retention policy is empty; the store keeps everything")
        results = prune_store(host, policy, kinds=kinds, apply=apply)
        _show_store(host, policy, results, apply=apply)
        gone = sum(len(r.forget) for r in results)
        detail = f"store: {gone} {'pruned' if apply else 'to prune'}"
        if "env" in kinds:
            server = prune_server_safely(host, apply=apply, sudo_password=password)
            _show_server(host, server, apply=apply)
            detail += f"; server: {len(server.forget)} {'pruned' if apply else 'to prune'}"
        return detail

    outcomes = for_each_host(hosts, work, title="backup.prune summary")
    if not apply:
        output.info("Dry run: nothing was deleted; add --yes to prune.")
    finish(outcomes)
