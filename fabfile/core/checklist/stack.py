"""Items about the running stack: which services run, their status, and the start order.

A service counts as up when its unit is active and it does its job: Redis
answers PING, a worker has a live heartbeat, the API's health URL says 200.
"""

from __future__ import annotations

from .. import services
from ..model import Host
from ..services import Service
from . import fixes
from .model import FAIL, OK, Fix, HostFacts, Row, UnitState

# systemd starts the worker and the API together once Redis is up (both are
# After=redis only), so at boot either may come first by a few milliseconds.
TOGETHER_US = 2_000_000


def unit(facts: HostFacts, name: str) -> UnitState:
    return facts.units.get(name) or UnitState(name)


def problem(facts: HostFacts, service: Service) -> str | None:
    """Why this service is not doing its job, or None."""
    state = unit(facts, service.unit)
    if not state.up:
        return f"{service.unit} is {state.said}"
    if service.role == "redis" and not facts.redis.ok:
        return f"{service.unit} is active but {facts.redis.detail}"
    if service.role == "worker" and facts.redis.ok and not facts.redis.workers_alive:
        return f"{service.unit} is active but has no live heartbeat in Redis"
    if service.role == "api" and facts.health != "200":
        return f"{service.unit} is active but its health URL says {facts.health}"
    return None


def order_problems(host: Host, facts: HostFacts) -> list[tuple[Service, str]]:
    """Services that came up before one they follow (Redis -> worker -> API)."""
    found = []
    chosen = services.stack(host)
    for i, later in enumerate(chosen):
        for earlier in chosen[:i]:
            a, b = unit(facts, earlier.unit), unit(facts, later.unit)
            if earlier.role == later.role or not (a.up and b.up):
                continue
            slack = TOGETHER_US if {earlier.role, later.role} == {"worker", "api"} else 0
            if b.entered_mono + slack < a.entered_mono:
                ahead = (a.entered_mono - b.entered_mono) / 1e6
                found.append((later, f"{later.unit} started {ahead:.1f} s before {earlier.unit}"))
    return found


def undeclared(host: Host, facts: HostFacts) -> list[str]:
    """App units that systemd may start before Redis (no After= on the Redis unit)."""
    redis = host.redis.unit
    return [
        f"{s.unit} lacks After={redis}"
        for s in services.stack(host)
        if s.role != "redis" and unit(facts, s.unit).load == "loaded"
        and redis not in unit(facts, s.unit).after
    ]  # fmt: skip


def restart_fix(host: Host, facts: HostFacts) -> Fix | None:
    """Restart in order from the first service that is down or started out of order.

    A crash-looping Redis (typically a corrupt dump) needs its data set aside
    first: restore.redis, the runbook's scenario 2.
    """
    chosen = services.stack(host)
    late = {s.unit for s, _ in order_problems(host, facts)}
    for service in chosen:
        if problem(facts, service) or service.unit in late:
            if service.role == "redis" and unit(facts, service.unit).crash_looping:
                return fixes.fab(host, "restore.redis")
            return fixes.restart_from(host, service.role)
    return None


def services_row(host: Host, facts: HostFacts) -> Row:
    states = [unit(facts, s.unit) for s in services.stack(host)]
    running = [u.name for u in states if u.up]
    stopped = [f"{u.name} ({u.said})" for u in states if not u.up]
    evidence = f"running: {', '.join(running) or 'none'}; stopped: {', '.join(stopped) or 'none'}"
    fix = restart_fix(host, facts) if stopped else None
    return Row("services", "services running", FAIL if stopped else OK, evidence, fix)


def status_rows(host: Host, facts: HostFacts) -> list[Row]:
    rows = []
    for service in services.stack(host):
        state = unit(facts, service.unit)
        said = [f"{state.said} since {state.entered}" if state.up else state.said]
        if service.role == "redis":
            said.append(facts.redis.detail)
        elif service.role == "worker":
            said.append(facts.redis.workers_said if facts.redis.ok else "heartbeats unknown")
        else:
            said.append(f"health {facts.health}")
        if state.restarts:
            said.append(f"restarted {state.restarts} time(s) by systemd")
        bad = problem(facts, service)
        fix = restart_fix(host, facts) if bad else None
        rows.append(Row("status", service.unit, FAIL if bad else OK, "; ".join(said), fix))
    return rows


def order_row(host: Host, facts: HostFacts) -> Row:
    chosen = services.stack(host)
    item = " → ".join(s.unit.removesuffix(".service") for s in chosen)
    missing = undeclared(host, facts)
    late = order_problems(host, facts)
    if missing:
        return Row("start order", item, FAIL, "; ".join(missing), fixes.fab(host, "restore.units"))
    if late:
        return Row("start order", item, FAIL, "; ".join(w for _, w in late),
                   restart_fix(host, facts))  # fmt: skip
    up = [s for s in chosen if unit(facts, s.unit).up]
    down = [s.unit for s in chosen if s not in up]
    if down:
        return Row("start order", item, FAIL, f"not started: {', '.join(down)}",
                   restart_fix(host, facts))  # fmt: skip
    base = min(unit(facts, s.unit).entered_mono for s in up)
    seen = ", ".join(
        f"{s.unit} +{(unit(facts, s.unit).entered_mono - base) / 1e6:.2f} s" for s in up
    )
    return Row("start order", item, OK, f"units ordered After={host.redis.unit}; started {seen}")
