"""Which steps a backup of one host takes, and running them over one connection."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime

from .. import plan as plans
from ..errors import ZachotError
from ..model import Host
from ..store import Store
from ..transport import Transport
from . import env, logs, redis, units
from .context import BackupContext


class BackupFailed(ZachotError):
    pass


def plan_backup(ctx: BackupContext, kinds: Sequence[str], *, full: bool = False) -> plans.Plan:
    steps = {
        "env": lambda: env.step(ctx),
        "units": lambda: units.step(ctx),
        "logs": lambda: logs.step(ctx, full=full),
        "redis": lambda: redis.step(ctx),
    }
    title = f"backup {' + '.join(kinds)}"
    return plans.Plan(ctx.host.name, title, tuple(steps[kind]() for kind in kinds))


def context_for(host: Host, now: datetime, *, sudo_password: str | None = None) -> BackupContext:
    return BackupContext(
        host, Transport(host, sudo_password=sudo_password), Store(host.store.path), now
    )


def back_up(ctx: BackupContext, kinds: Sequence[str], *, full: bool = False) -> str:
    """Every kind over one connection; a failed kind does not stop the others."""
    with ctx.transport.open():
        plan = plan_backup(ctx, kinds, full=full)
        if "units" in kinds[1:]:
            units.start(ctx)  # read-only: beside the first step, not a round trip after it
        results = plans.execute(plan, keep_going=True)
    plans.report(plan, results)
    failed = [r for r in results if not r.ok]
    if failed:
        raise BackupFailed("; ".join(f"{r.step.name}: {r.detail}" for r in failed))
    return "; ".join(f"{r.step.name} {r.detail}" for r in results)


@contextmanager
def store_locks(hosts: Sequence[Host], purpose: str) -> Iterator[None]:
    """Lock every store these hosts write to, in a fixed order (no deadlock)."""
    roots = sorted({(str(h.store.path), h.store.lock_timeout) for h in hosts})
    with ExitStack() as stack:
        for root, timeout in roots:
            stack.enter_context(Store(root).lock(timeout=timeout, purpose=purpose))
        yield
