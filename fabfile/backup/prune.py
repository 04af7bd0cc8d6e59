"""backup.prune: forget old backups by the retention policy: in the store, on the off-site
box and on the server."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

from invoke import task

from ..core import output
from ..core.errors import UsageError
from ..core.model import Host
from ..core.runner import finish, first_call, for_each_host, guarded, load, target_hosts

if TYPE_CHECKING:
    from ..core.prune import KindPrune, OffsitePrune, ServerPrune
    from ..core.retention import Decision, Policy

HELP = {
    "kind": "only this kind: env, units, logs or redis",
    "keep_last": "keep the newest N (default: the inventory's backup.keep_last)",
    "keep_daily": "keep the newest of each of the last N days with a backup",
    "keep_weekly": "keep the newest of each of the last N weeks with a backup",
    "keep_monthly": "keep the newest of each of the last N months with a backup",
    "yes": "really delete; without it this is a dry run",
    "dry_run": "only show what would be pruned (the default)",
    "offsite": "also the off-site copy, when the inventory names one (--no-offsite: not)",
    "json": "the decisions as JSON (what is kept or dropped, where, and why)",
}
Row = tuple[str, str, str, str, str]  # kind, backup, created, action, why


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


def _rows(kind: str, decisions: tuple[Decision, ...], *, apply: bool) -> list[Row]:
    rows = []
    for decision in decisions:
        action = "keep" if decision.keep else ("deleted" if apply else "prune")
        created = decision.created.strftime("%Y-%m-%d %H:%M %Z")
        rows.append((kind, decision.id, created, action, ", ".join(decision.reasons)))
    return rows


def _show_store(host: Host, policy: Policy, results: list[KindPrune], *, apply: bool) -> list[Row]:
    verb = "Pruned" if apply else "Would prune"
    rows = []
    for result in results:
        for decision in result.forget:
            output.info(f"{verb} {host.name}/{result.kind}/{decision.id}")
        rows += _rows(result.kind, result.decisions, apply=apply)
    output.table(
        f"{host.name}: store {host.store.path} (keep {policy.describe()})",
        ["kind", "backup", "created", "action", "why"],
        rows,
    )
    return rows


def _show_offsite(
    host: Host, policy: Policy, results: list[OffsitePrune], *, apply: bool
) -> list[Row]:
    from ..core.prune import LEFTOVER

    rows = []
    for result in results:
        done = set(result.deleted)
        for backup_id in [*result.leftovers, *(d.id for d in result.forget)]:
            verb = "Pruned" if backup_id in done else "Would prune" if not apply else "Not pruned"
            output.info(f"{verb} {result.vault}:{host.name}/{result.kind}/{backup_id}")
        for backup_id in result.leftovers:
            action = "deleted" if backup_id in done else "prune" if not apply else "left"
            rows.append((result.kind, backup_id, "-", action, LEFTOVER))
        for row in _rows(result.kind, result.decisions, apply=apply):
            left = apply and row[3] == "deleted" and row[1] not in done
            rows.append((*row[:3], "left", row[4]) if left else row)
    vaults = ", ".join(dict.fromkeys(r.vault for r in results))
    output.table(
        f"{host.name}: off-site copy on {vaults} (keep {policy.describe()})",
        ["kind", "backup", "created", "action", "why"],
        rows,
    )
    return rows


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


def _json_rows(host: str, where: str, rows: list[Row]) -> list[dict[str, str]]:
    keys = ("kind", "id", "created", "action", "why")
    return [{"host": host, "where": where, **dict(zip(keys, row, strict=True))} for row in rows]


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
    offsite=True,
    json=False,
):
    """Forget old backups like restic (last/daily/weekly/monthly), off-site too; a dry run
    unless --yes."""
    from ..core.manifest import KINDS
    from ..core.offsite_backend import has_offsite
    from ..core.prune import (
        OffsitePruneFailed,
        prune_offsite_host,
        prune_server_safely,
        prune_store,
    )
    from ..core.retention import Policy

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
    inventory = load(c)
    hosts = target_hosts(c, inventory)
    kinds = (kind,) if kind else KINDS
    apply = bool(yes)
    password = c.config.get("sudo", {}).get("password")
    decided: list[dict[str, str]] = []

    def work(host: Host) -> str:
        policy = Policy.from_settings(host.backup, **overrides)
        if policy.empty:
            output.warn(f"{host.name}: the retention policy is empty; the store keeps everything")
        results = prune_store(host, policy, kinds=kinds, apply=apply)
        decided.extend(
            _json_rows(host.name, "store", _show_store(host, policy, results, apply=apply))
        )
        gone = sum(len(r.forget) for r in results)
        verb = "pruned" if apply else "to prune"
        detail = f"store: {gone} {verb}"
        if "env" in kinds:
            server = prune_server_safely(host, apply=apply, sudo_password=password)
            _show_server(host, server, apply=apply)
            detail += f"; server: {len(server.forget)} {verb}"
        if offsite and has_offsite(host):
            # What the store keeps stays off-site too: replicate would only send it again.
            kept = {r.kind: {d.id for d in r.decisions if d.keep} for r in results}
            remote = prune_offsite_host(
                host, inventory.host, policy, kinds=kinds, local_kept=kept, apply=apply
            )
            rows = _show_offsite(host, policy, remote, apply=apply)
            decided.extend(_json_rows(host.name, "offsite", rows))
            if failed := next((r for r in remote if r.error), None):
                raise OffsitePruneFailed(failed)
            gone = sum(len(r.forget) + len(r.leftovers) for r in remote)
            detail += f"; off-site: {gone} {verb}"
        return detail

    # With --json, the tables go to stderr and stdout holds only the JSON.
    with contextlib.redirect_stdout(sys.stderr) if json else contextlib.nullcontext():
        outcomes = for_each_host(hosts, work, title="backup.prune summary")
        if not apply:
            output.info("Dry run: nothing was deleted; add --yes to prune.")
    if json:
        output.emit_json(decided)
    finish(outcomes)
