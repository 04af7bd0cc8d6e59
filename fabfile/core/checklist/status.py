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
from ..offsite import read_index
from ..offsite_backend import Backend, grouped, has_offsite
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
    # Its exit code: unreachable (4), or a changed or unknown host key (5).
    down_code: ExitCode = ExitCode.UNREACHABLE
    units: dict[str, str] = field(default_factory=dict)  # unit -> ActiveState
    redis: RedisFacts | None = None
    ref: str | None = None
    commit: str | None = None
    health: str | None = None
    local: dict[str, datetime] | str = field(default_factory=dict)  # kind -> newest, or why
    offsite: dict[str, datetime] | str | None = None  # kind -> time, or why unknown
    # A scratch host that holds no zachot (no code, app units inactive): nothing to judge.
    empty_scratch: bool = False

    @property
    def problems(self) -> list[str]:
        if self.down:
            return [f"down: {self.down}"]
        if self.empty_scratch:
            return []
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
            # Side by side on the one connection: on a far link, one wait instead of two.
            parts, redis = transport.together(
                lambda: gather.sections(transport, remote.STATUS),
                lambda: gather.redis_facts(transport),
            )
    except ZachotError as exc:
        code = ExitCode.HOST_KEY if exc.exit_code == ExitCode.HOST_KEY else ExitCode.UNREACHABLE
        return HostStatus(host.name, down=exc.message, down_code=code, local=local)
    units = remote.parse_units(parts["units"])
    code = remote.parse_code(parts.get("code", ""), "@absent")
    states = {s.unit: (units.get(s.unit) or UnitState(s.unit)).active for s in services.stack(host)}
    app_units = [s.unit for s in services.stack(host) if s.role != "redis"]
    return HostStatus(
        host.name,
        empty_scratch=host.scratch
        and code.commit is None
        and all(states[u] != "active" for u in app_units),
        units=states,
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
    with_offsite = []
    for host in hosts:
        if not has_offsite(host) or host.backup.offsite_host == host.name:  # it is the box
            found[host.name] = "-" if has_offsite(host) else "no off-site box"
        else:
            with_offsite.append(host)
    by_vault, errors = grouped(with_offsite, find)
    found.update({name: failed(name, exc).detail for name, exc in errors.items()})
    for name, (where, members) in by_vault.items():
        try:
            with where.open() as vault:
                for host in members:
                    found[host.name] = _indexed_ages(vault, host)
        except Exception as exc:
            found.update({h.name: f"{name}: {failed(name, exc).detail}" for h in members})
    return found


def _indexed_ages(vault: Backend, host: Host) -> dict[str, datetime] | str:
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
    if status.empty_scratch:
        return (status.host, "empty scratch host", "-", "-", "-", _ages(status.local, now),
                "-", "no zachot (scratch: true)")  # fmt: skip
    stopped = [
        f"{u.removesuffix('.service')} {s}" for u, s in status.units.items() if s != "active"
    ]
    redis = status.redis
    redis_said = f"up, {redis.workers_said}" if redis and redis.ok else "DOWN"
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
        "empty_scratch": status.empty_scratch,
        "problems": status.problems,
        "services": status.units,
        "redis": None if redis is None else {
            "up": redis.ok, "detail": redis.detail, "workers_alive": redis.workers_alive,
            "workers_stale": redis.workers_stale, "queues": redis.queues,
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
        return Outcome(status.host, False, problems[0], 0.0, status.down_code)
    if problems:
        return Outcome(status.host, False, "; ".join(problems), 0.0, ExitCode.FAILED)
    return Outcome(status.host, True, "ok", 0.0)
