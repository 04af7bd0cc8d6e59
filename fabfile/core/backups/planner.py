"""Which steps a backup of one host takes, and running them over one connection."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import datetime
from types import ModuleType

from .. import plan as plans
from ..errors import ZachotError
from ..model import Host
from ..store import Store
from ..transport import Transport
from .context import BackupContext


class BackupFailed(ZachotError):
    pass


def plan_backup(ctx: BackupContext, kinds: Sequence[str], *, full: bool = False) -> plans.Plan:
    steps = {
        "env": lambda env: env.step(ctx),
        "units": lambda units: units.step(ctx),
        "logs": lambda logs: logs.step(ctx, full=full),
        "redis": lambda redis: redis.step(ctx),
    }
    title = f"backup {' + '.join(kinds)}"
    return plans.Plan(ctx.host.name, title, tuple(steps[kind](_kind(kind)) for kind in kinds))


def _kind(name: str) -> ModuleType:
    """A kind's module, imported when a plan takes that kind: a logs run loads nothing of
    Redis or dotenv (start-up is most of a routine run's time on a far link)."""
    return importlib.import_module(f"{__package__}.{name}")


def context_for(host: Host, now: datetime, *, sudo_password: str | None = None) -> BackupContext:
    return BackupContext(
        host, Transport(host, sudo_password=sudo_password), Store(host.store.path), now
    )


def back_up(ctx: BackupContext, kinds: Sequence[str], *, full: bool = False) -> str:
    """Every kind over one connection; a failed kind does not stop the others."""
    with ctx.transport.open():
        plan = plan_backup(ctx, kinds, full=full)
        if "units" in kinds[1:]:
            _kind("units").start(ctx)  # read-only: beside the first step, not a round trip after it
        results = plans.execute(plan, keep_going=True)
    plans.report(plan, results)
    failed = [r for r in results if not r.ok]
    if failed:
        raise BackupFailed("; ".join(f"{r.step.name}: {r.detail}" for r in failed))
    return "; ".join(f"{r.step.name} {r.detail}" for r in results)
