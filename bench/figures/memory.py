"""Figure 5: peak RSS of `fab backup.logs --full` over about 500 MB of logs.

The logs of figure 3 plus enough random-byte .gz rotations to reach the total.
The peak is the child's own ru_maxrss (os.wait4), the worst of the repetitions.
For reference, the baseline column is `fab --list`: the same interpreter and
imports, no transfer.
"""

from __future__ import annotations

from ..context import BenchContext
from ..results import Row, Side
from ..settings import MB, OWN_BOX

TITLE = "memory: peak RSS of backup.logs --full"
OP, TARGET = "<", 1.0
MEANING = "peak RSS (worst repetition) / the 100 MB limit (must stay below 1)"


def run(ctx: BenchContext) -> list[Row]:
    box = OWN_BOX
    limit = ctx.settings.rss_limit_mb
    ctx.data.logs()
    ctx.data.memory_extra()
    size_mb = ctx.data.logs_size() / MB
    peaks: list[float] = []
    seconds: list[float] = []
    for _ in range(ctx.settings.reps):
        inventory, store = ctx.workspace.fresh_store()
        try:
            done = ctx.fab(inventory, [box], "backup.logs", "--full")
        finally:
            ctx.workspace.drop_store(store)
        peaks.append(done.max_rss_kb / 1024)
        seconds.append(done.seconds)
    ours = Side(f"fab -H {box} backup.logs --full", peaks, unit="MB", reduce="max")
    startup = ctx.startup()
    return [
        Row(
            "5",
            f"{TITLE}, {size_mb:.0f} MB of logs ({box})",
            MEANING.replace("100", f"{limit:g}"),
            OP,
            TARGET,
            ours=ours,
            baseline=Side(
                "fab --list (reference, not the limit)",
                [startup.max_rss_mb],
                unit="MB",
                reduce="max",
            ),
            ratio=ours.value / limit,
            notes=[
                f"RSS MB per repetition: {', '.join(f'{p:.1f}' for p in peaks)}; "
                f"wall s: {', '.join(f'{s:.2f}' for s in seconds)}"
            ],
        )
    ]
