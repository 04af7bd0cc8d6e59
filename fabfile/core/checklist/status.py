"""status: one row per host — services, Redis and queues, deployed ref, backup ages, health.

Hosts are read in parallel (bounded), each over one connection with the
checklist's own script (fewer sections) and Redis tunnel; off-site ages come
from one SFTP session per off-site box, alongside: one read of each host's index
there. A host that cannot be reached, or runs no commands, is a row that says
"down" and why.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .. import services
from ..errors import ExitCode, ZachotError
from ..manifest import KINDS
from ..model import Host
from ..offsite import Vault, read_index, vault_for
from ..output import human_age
from ..runner import Outcome, failed
from ..transport import Transport
from . import gather, remote
from .model import RedisFacts, UnitState

PARALLEL = 8
COLUMNS = ("host", "services", "redis", "queues", "ref", "local backups", "off-site", "health")


@dataclass(frozen=True)
class HostStatus:
    host: str
    down: str | None = None  # why the host could not be read
    units: dict[str, str] = field(default_factory=dict)  # unit -> ActiveState
    redis: RedisFacts | None = None
    ref: str | None = None
    commit: str | None = None
    health: str | None = None
    local: dict[str, datetime] | str = field(default_factory=dict)  # kind -> newest, or why
    offsite: dict[str, datetime] | str | None = None  # kind -> time, or why unknown

    @property
    def problems(self) -> list[str]:
        if self.down:
            return [f"down: {self.down}"]
        found = [f"{u} {s}" for u, s in self.units.items() if s != "active"]
        found += [] if self.redis and self.redis.ok else ["Redis does not answer"]
        found += [] if self.health == "200" else [f"health {self.health}"]
        return found


def read_host(host: Host, password: str | None = None) -> HostStatus:
    local: dict[str, datetime] | str
    try:
        local = {k: b.created for k, b in gather.backups(host).items()}
    except ZachotError as exc:  # an unreadable store still leaves the host's row
        local = exc.message
    try:
        with Transport(host, sudo_password=password) as transport:
            parts = gather.sections(transport, remote.STATUS)
            redis = gather.redis_facts(transport)
    except ZachotError as exc:
        return HostStatus(host.name, down=exc.message, local=local)
    units = remote.parse_units(parts["units"])
    code = remote.parse_code(parts.get("code", ""), "@absent")
    return HostStatus(
        host.name,
        units={
            s.unit: (units.get(s.unit) or UnitState(s.unit)).active for s in services.stack(host)
        },
        redis=redis,
        ref=code.describe,
        commit=code.commit,
        health=remote.parse_health(parts.get("health", "")),
        local=local,
    )


def _read_safely(host: Host, password: str | None) -> HostStatus:
    """read_host, with a surprise (a malformed answer) as that host's row, not everyone's."""
    try:
        return read_host(host, password)
    except Exception as exc:
        return HostStatus(host.name, down=failed(host.name, exc).detail)


def offsite_ages(hosts: list[Host], find: Callable[[str], Host]) -> dict[str, dict | str]:
    """host -> {kind: time of the newest complete backup on its vault}, or why not known."""
    found: dict[str, dict | str] = {}
    by_vault: dict[str, list[Host]] = {}
    for host in hosts:
        if host.backup.offsite_host in (None, host.name):  # none, or it is the off-site box
            found[host.name] = "-" if host.backup.offsite_host else "no off-site box"
            continue
        try:
            by_vault.setdefault(vault_for(host, find).name, []).append(host)
        except Exception as exc:  # expected or not, that host's cell (runner.failed)
            found[host.name] = failed(host.name, exc).detail
    for name, members in by_vault.items():
        try:
            with Vault.open(find(name)) as vault:
                for host in members:
                    found[host.name] = _indexed_ages(vault, host)
        except Exception as exc:
            found.update({h.name: f"{name}: {failed(name, exc).detail}" for h in members})
    return found


def _indexed_ages(vault: Vault, host: Host) -> dict[str, datetime] | str:
    """From the vault's index alone: one read, however many backups it holds."""
    index = read_index(vault, host)
    if index.problem:
        return f"{index.problem}; run fab backup.replicate"
    return newest(index.backups)


def newest(remote_backups: dict) -> dict[str, datetime]:
    ages: dict[str, datetime] = {}
    for (kind, backup_id), there in remote_backups.items():
        if there.complete:
            when = datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            ages[kind] = max(ages.get(kind, when), when)
    return ages


def read_all(
    hosts: list[Host], find: Callable[[str], Host], password: str | None = None
) -> list[HostStatus]:
    """Every host in parallel (bounded), the off-site listing alongside."""
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(hosts) + 1)) as pool:
        vaults = pool.submit(offsite_ages, hosts, find)
        states = list(pool.map(lambda h: _read_safely(h, password), hosts))
        offsite = vaults.result()
    return [replace(s, offsite=offsite.get(s.host)) for s in states]


# -- presentation (pure) ----------------------------------------------------------


def _ages(found: dict[str, datetime] | str | None, now: datetime) -> str:
    if isinstance(found, str):
        return found
    if not found:
        return "none"
    return ", ".join(f"{k} {human_age(found[k], now)}" for k in KINDS if k in found)


def _queues(redis: RedisFacts | None) -> str:
    if redis is None or not redis.ok:
        return "-"
    return "; ".join(
        f"{q}: {c['queued']} queued, {c['delayed']} delayed, {c['in_flight']} in flight, "
        f"{c['dead']} dead"
        for q, c in redis.queues.items()
    )


def row(status: HostStatus, now: datetime) -> tuple[str, ...]:
    if status.down:
        return (status.host, "DOWN", "-", "-", "-", _ages(status.local, now),
                _ages(status.offsite, now), status.down)  # fmt: skip
    stopped = [
        f"{u.removesuffix('.service')} {s}" for u, s in status.units.items() if s != "active"
    ]
    redis = status.redis
    redis_said = f"up, {redis.workers_alive} live worker(s)" if redis and redis.ok else "DOWN"
    commit = f" ({status.commit[:8]})" if status.commit else ""
    return (
        status.host,
        f"all {len(status.units)} active" if not stopped else "; ".join(stopped),
        redis_said,
        _queues(redis),
        f"{status.ref or '-'}{commit}",
        _ages(status.local, now),
        _ages(status.offsite, now),
        "ok" if status.health == "200" else f"FAILED ({status.health})",
    )


def as_json(status: HostStatus) -> dict[str, Any]:
    def times(found: dict[str, datetime] | str | None) -> dict[str, str] | str | None:
        if isinstance(found, dict):
            return {k: v.strftime("%Y-%m-%dT%H:%M:%SZ") for k, v in found.items()}
        return found

    redis = status.redis
    return {
        "host": status.host,
        "up": status.down is None,
        "down": status.down,
        "ok": not status.problems,
        "problems": status.problems,
        "services": status.units,
        "redis": None if redis is None else {
            "up": redis.ok, "detail": redis.detail, "workers_alive": redis.workers_alive,
            "queues": redis.queues,
        },
        "ref": status.ref,
        "commit": status.commit,
        "health": status.health,
        "backups_local": times(status.local),
        "backups_offsite": times(status.offsite),
    }  # fmt: skip


def outcome(status: HostStatus) -> Outcome:
    problems = status.problems
    if status.down:
        return Outcome(status.host, False, problems[0], 0.0, ExitCode.UNREACHABLE)
    if problems:
        return Outcome(status.host, False, "; ".join(problems), 0.0, ExitCode.FAILED)
    return Outcome(status.host, True, "ok", 0.0)
