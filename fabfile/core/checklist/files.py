"""Items about the critical files: the env file, the units, and backups to restore them from."""

from __future__ import annotations

import posixpath
from dataclasses import replace
from datetime import timedelta

from .. import services
from ..model import Host
from ..output import human_age
from . import fixes
from .model import FAIL, NA, OK, HostFacts, Row
from .stack import unit

RESTORE_KINDS = ("env", "units")  # what restore.env and restore.units need


def env_row(host: Host, facts: HostFacts) -> Row:
    layout, env = host.layout, facts.env
    item = f"env file {layout.env_file}"
    if not env.readable:
        return Row("files", item, NA, "its directory is closed to this user; set sudo: true")
    if not env.present:
        return Row("files", item, FAIL, "missing", fixes.fab(host, "restore.env"))
    if env.kind != "regular file":
        return Row("files", item, FAIL, f"is a {env.kind}", fixes.fab(host, "restore.env"))
    missing = [k for k in layout.required_env_keys if k not in env.keys]
    if missing:
        said = f"{len(env.keys)} keys; lacks {', '.join(missing)}"
        return Row("files", item, FAIL, said, fixes.fab(host, "restore.env"))
    user = layout.service_user
    seen = f"0{env.mode} {env.owner}:{env.group}"
    if env.mode != "600" or (env.owner, env.group) != (user, user):
        said = f"{seen}, expected 0600 {user}:{user}"
        return Row("files", item, FAIL, said, fixes.env_perms(host))
    return Row("files", item, OK, f"{seen}, {len(env.keys)} keys, required keys present")


def units_row(host: Host, facts: HostFacts) -> Row:
    apps = [s.unit for s in services.stack(host) if s.role != "redis"]
    problems = []
    for name in apps:
        state = unit(facts, name)
        wanted = posixpath.join(host.layout.unit_dir, name)
        if state.load != "loaded":
            problems.append(f"{name} {state.load}")
        elif state.fragment != wanted:
            problems.append(f"{name} loaded from {state.fragment or 'nowhere'}, not {wanted}")
        elif state.need_reload:
            problems.append(f"{name} changed on disk since the last daemon-reload")
    item = "unit files " + ", ".join(apps)
    if problems:
        return Row("files", item, FAIL, "; ".join(problems), fixes.fab(host, "restore.units"))
    return Row("files", item, OK, f"loaded from {host.layout.unit_dir}")


def backups_row(host: Host, facts: HostFacts) -> Row:
    """restore.env and restore.units need a backup; a stale one restores old settings."""
    item = "backups to restore from"
    have = {k: facts.backups[k] for k in RESTORE_KINDS if k in facts.backups}
    if not have:
        return Row("files", item, NA, f"no env or units backup of {host.name} in the store")
    limit = timedelta(days=host.backup.max_age_days)
    said = [f"{k} {b.id} ({human_age(b.created, facts.now)} old)" for k, b in have.items()]
    lacking = [k for k in RESTORE_KINDS if k not in have]
    stale = [k for k, b in have.items() if facts.now - b.created > limit]
    said += [f"no {k} backup" for k in lacking]
    state = FAIL if stale or lacking else OK
    if stale:
        said.append(f"{', '.join(stale)} older than {host.backup.max_age_days:g} days")
    owner = next(iter(have.values())).host or host.name  # a drill's source
    fix = fixes.fab(replace(host, name=owner), "backup.all") if state == FAIL else None
    where = f"{owner}'s " if owner != host.name else ""
    return Row("files", item, state, where + "; ".join(said), fix)


def rows(host: Host, facts: HostFacts) -> list[Row]:
    return [env_row(host, facts), units_row(host, facts), backups_row(host, facts)]
