"""Figure 6: the RTO of each runbook scenario, measured on the sandbox (issue 5).

Each scenario breaks a box the way the runbook describes, runs the one recovery
task, and takes the total the task itself prints (its step table). The ratio is
that total over our target; the runbook's own estimate is in the notes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from sandbox import box_exec
from sandbox.config import Paths
from sandbox.fleet import reset

from ..context import BenchContext
from ..measure import BenchError
from ..results import Row, Side
from ..settings import RTO_BOX, SCRATCH_BOX

TITLE = "RTO of each runbook scenario"
MEANING = "the task's own total / our target (lower is better)"
OP, TARGET = "<=", 1.0
TOTAL = re.compile(r"total ([0-9.]+) s")
ENV = "/opt/zachot/envs/prod/etc/zachot.env"


def _break_env(_ctx: BenchContext, _inventory: Path) -> None:
    box_exec(RTO_BOX, ["rm", "-f", ENV])


def _break_redis(_ctx: BenchContext, _inventory: Path) -> None:
    box_exec(RTO_BOX, ["sh", "-c", "head -c 4096 /dev/urandom > /var/lib/redis/dump.rdb"])


def _deploy_bad(ctx: BenchContext, inventory: Path) -> None:
    """The runbook's scenario 3: a release whose code crashes at start."""
    try:
        ctx.fab(inventory, [RTO_BOX], "deploy.release", "--to=bad", "--yes")
    except BenchError:
        return  # expected: it fails at the health gate
    raise BenchError("deploy.release --to=bad did not fail; the scenario is not set up")


def _fresh_scratch(_ctx: BenchContext, _inventory: Path) -> None:
    reset(SCRATCH_BOX, log=lambda _m: None)


# (task, runbook estimate, our target in seconds, how to break the box, host, fab arguments)
Damage = Callable[[BenchContext, Path], None]
SCENARIOS: list[tuple[str, str, float, Damage, str, list[str]]] = [
    ("restore.env", "2-5 min", 10.0, _break_env, RTO_BOX, ["restore.env", "--yes"]),
    ("restore.redis", "5-10 min", 15.0, _break_redis, RTO_BOX, ["restore.redis", "--yes"]),
    ("deploy.rollback", "5-15 min", 20.0, _deploy_bad, RTO_BOX, ["deploy.rollback", "--yes"]),
    (
        "restore.server onto new-box, with the wheelhouse",
        "30-60 min",
        180.0,
        _fresh_scratch,
        SCRATCH_BOX,
        ["restore.server", "--source", RTO_BOX, "--yes", "--wheelhouse", str(Paths().wheels)],
    ),
]


def run(ctx: BenchContext) -> list[Row]:
    inventory, store = ctx.workspace.fresh_store()
    ctx.fab(inventory, [RTO_BOX], "backup.all", "--no-offsite")
    rows = []
    for number, (task, runbook, target, damage, host, args) in enumerate(SCENARIOS, 1):
        totals = []
        for _ in range(ctx.settings.reps):
            damage(ctx, inventory)
            said = ctx.fab(inventory, [host], *args).stdout
            found = TOTAL.findall(said)
            if not found:
                raise BenchError(f"{task}: no total in its output")
            totals.append(float(found[-1]))
        rows.append(
            Row(
                f"6.{number}",
                f"RTO of {task} ({RTO_BOX})",
                MEANING,
                OP,
                TARGET,
                ours=Side(f"fab -H {host} {args[0]}", totals),
                baseline=Side("our target", [target]),
                ratio=sorted(totals)[len(totals) // 2] / target,
                notes=[f"runbook estimate: {runbook}"],
            )
        )
    reset(RTO_BOX, log=lambda _m: None)
    reset(SCRATCH_BOX, log=lambda _m: None)
    ctx.workspace.drop_store(store)
    return rows
