"""Dependency items: Redis answers PING, python3 and the venv run, systemd knows the units."""

from __future__ import annotations

import posixpath

from .. import services
from ..model import Host
from ..redis_access import parse_url
from . import fixes
from .model import FAIL, OK, HostFacts, Row
from .stack import restart_fix, unit


def redis_row(host: Host, facts: HostFacts) -> Row:
    item = f"Redis PING ({parse_url(host.redis.url).where})"
    if facts.redis.ok:
        return Row("dependencies", item, OK, facts.redis.detail)
    state = unit(facts, host.redis.unit)
    said = f"{facts.redis.detail} ({host.redis.unit} {state.said})"
    return Row("dependencies", item, FAIL, said, restart_fix(host, facts))


def python_row(host: Host, facts: HostFacts) -> Row:
    if facts.python.system:
        return Row("dependencies", "python3", OK, facts.python.system)
    return Row(
        "dependencies", "python3", FAIL, "python3 is missing", fixes.install(host, "python3")
    )


def venv_row(host: Host, facts: HostFacts) -> Row:
    python = posixpath.join(host.layout.venv_dir, "bin", "python")
    if facts.python.venv:
        return Row("dependencies", "venv", OK, f"{python}: {facts.python.venv}")
    said = f"{python} does not run: {facts.python.venv_error}"
    return Row("dependencies", "venv", FAIL, said, fixes.fab(host, "restore.server"))


def systemd_row(host: Host, facts: HostFacts) -> Row:
    item = "systemd units known and enabled"
    if not facts.units:
        return Row("dependencies", item, FAIL, "systemd did not answer systemctl show")
    problems = []
    for service in services.stack(host):
        state = unit(facts, service.unit)
        if state.load != "loaded":
            problems.append(f"{service.unit} {state.load}")
        elif state.file_state not in ("enabled", "enabled-runtime"):
            problems.append(f"{service.unit} {state.file_state or 'not enabled'}")
    if not problems:
        return Row("dependencies", item, OK, f"{len(facts.units)} units loaded and enabled")
    redis = unit(facts, host.redis.unit)
    fix = (
        fixes.install(host, "redis-server")
        if redis.load != "loaded"
        else fixes.fab(host, "restore.units")
    )
    return Row("dependencies", item, FAIL, "; ".join(problems), fix)


def rows(host: Host, facts: HostFacts) -> list[Row]:
    return [
        redis_row(host, facts),
        python_row(host, facts),
        venv_row(host, facts),
        systemd_row(host, facts),
    ]
