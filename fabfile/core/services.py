"""The service stack in the runbook's order, with a health gate on every start.

Start Redis -> worker -> API; stop in reverse. A start counts only once its
gate passes: Redis answers PING, the worker is active and has a fresh
heartbeat in Redis, the API's health URL returns 200.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import output
from .dramatiq_queues import heartbeats_key, server_millis
from .errors import ZachotError
from .model import Host
from .redis_access import RedisUnavailable, open_redis, wait_until_up
from .transport import Transport

ROLES = ("redis", "worker", "api")

HEALTH_PROBE = (
    "import sys, urllib.request as u\n"
    "try:\n"
    "    print(u.urlopen(sys.argv[1], timeout=5).status)\n"
    "except Exception as e:\n"
    "    print(getattr(e, 'code', None) or type(e).__name__)\n"
)


class HealthGateFailed(ZachotError):
    pass


@dataclass(frozen=True)
class Service:
    role: str
    unit: str


def stack(host: Host) -> list[Service]:
    """Every service in start order; units named *worker* are workers, the rest API."""
    workers = [Service("worker", u) for u in host.layout.units if "worker" in u]
    apis = [Service("api", u) for u in host.layout.units if "worker" not in u]
    return [Service("redis", host.redis.unit), *workers, *apis]


def select(host: Host, roles: Sequence[str]) -> list[Service]:
    return [s for s in stack(host) if s.role in roles]


def states(transport: Transport, services: Sequence[Service]) -> dict[str, str]:
    units = [s.unit for s in services]
    said = transport.run(["systemctl", "is-active", *units], check=False).stdout.split()
    return dict(zip(units, said + ["unknown"] * (len(units) - len(said)), strict=False))


def stop(transport: Transport, services: Sequence[Service]) -> str:
    """Stop in reverse start order; already-stopped units are left alone."""
    stopped = []
    for service in reversed(services):
        if states(transport, [service])[service.unit] != "inactive":
            transport.run(["systemctl", "stop", service.unit], sudo=True)
            stopped.append(service.unit)
    return f"stopped {', '.join(stopped)}" if stopped else "already stopped"


def start(transport: Transport, services: Sequence[Service], *, timeout: float) -> str:
    """Start in order, each one gated before the next starts."""
    said = []
    for service in services:
        since = _heartbeats_now(transport) if service.role == "worker" else Heartbeats()
        # A unit that crash-looped (e.g. on a corrupt dump) is refused by systemd's
        # start limit until its failed state is reset.
        transport.run(["systemctl", "reset-failed", service.unit], sudo=True, check=False)
        restarts = unit_status(transport, service.unit)[1]
        transport.run(["systemctl", "start", service.unit], sudo=True)
        passed = gate(transport, service, timeout=timeout, since=since, restarts=restarts)
        said.append(f"{service.unit}: {passed}")
    return "; ".join(said)


def unit_status(transport: Transport, unit: str) -> tuple[str, int]:
    """ActiveState and NRestarts: a rising NRestarts means a crash loop."""
    argv = ["systemctl", "show", "-p", "ActiveState", "-p", "NRestarts", "--", unit]
    props = dict(
        line.split("=", 1)
        for line in transport.run(argv, check=False).stdout.splitlines()
        if "=" in line
    )
    restarts = props.get("NRestarts", "0")
    return props.get("ActiveState", "unknown"), int(restarts) if restarts.isdigit() else 0


def gate(
    transport: Transport,
    service: Service,
    *,
    timeout: float,
    since: Heartbeats | None = None,
    restarts: int | None = None,
) -> str:
    checks: dict[str, Callable[[], str | None]] = {
        "redis": lambda: _redis_gate(transport, timeout),
        "worker": lambda: _worker_gate(transport, service, since or Heartbeats()),
        "api": lambda: _api_gate(transport),
    }
    return _poll(transport, service, checks[service.role], timeout, restarts)


def _poll(
    transport: Transport,
    service: Service,
    check: Callable[[], str | None],
    timeout: float,
    restarts: int | None,
) -> str:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            ok = check()
            if ok is not None:
                return ok
        except RedisUnavailable as exc:
            last = exc.message
        state, now_restarts = unit_status(transport, service.unit)
        # Don't wait out the timeout for a unit that already died or restarts in a loop.
        crashed = state == "failed" or (restarts is not None and now_restarts > restarts)
        if crashed or time.monotonic() >= deadline:
            why = "crashed" if crashed else f"is not healthy after {timeout:g} s"
            raise HealthGateFailed(f"{service.unit} {why} (unit {state}; {last})")
        time.sleep(1.0)


def _redis_gate(transport: Transport, timeout: float) -> str:
    return f"PONG (redis {wait_until_up(transport, timeout=timeout)})"


@dataclass(frozen=True)
class Heartbeats:
    """Dramatiq's heartbeats set just before a worker starts: Redis's clock and the ids in it.

    Every broker that enqueues writes a heartbeat too (dispatch.lua records one per call),
    so on a live box the API and other producers keep the set fresh with no worker at all.
    Only an id that was not there before the start can be the new worker's."""

    ms: int = 0
    ids: frozenset[str] = frozenset()


def _heartbeats_now(transport: Transport) -> Heartbeats:
    namespace = transport.host.dramatiq.namespace
    with open_redis(transport) as client:
        ids = {_text(i) for i in client.zrange(heartbeats_key(namespace), 0, -1)}
        return Heartbeats(server_millis(client), frozenset(ids))


def _worker_gate(transport: Transport, service: Service, since: Heartbeats) -> str | None:
    if states(transport, [service])[service.unit] != "active":
        return None
    namespace = transport.host.dramatiq.namespace
    with open_redis(transport) as client:
        fresh = client.zrangebyscore(heartbeats_key(namespace), since.ms, "+inf")
    new = [i for i in (_text(i) for i in fresh) if i not in since.ids]
    return f"active, {len(new)} new heartbeat(s)" if new else None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _api_gate(transport: Transport) -> str | None:
    url = transport.host.layout.api_health_url
    said = transport.run(["python3", "-c", HEALTH_PROBE, url], check=False).stdout.strip()
    return f"{url} -> 200" if said == "200" else None


def error_tail(transport: Transport, lines: int = 5) -> None:
    """The last lines of the *.err logs, masked, to show why a start failed."""
    logs = transport.host.layout.logs_dir
    script = 'for f in "$1"/*.err; do [ -f "$f" ] && echo "== $f" && tail -n "$2" -- "$f"; done'
    said = transport.run(["sh", "-c", script, "sh", logs, str(lines)], sudo=True, check=False)
    for line in said.stdout.splitlines():
        output.info(f"  {line}")
