"""Figure 3: `fab backup.logs` against `ssh box 'tar czf - /opt/zachot/logs' > file`.

The logs directory holds the box's own small logs plus about 300 MB of test logs:
half plain text, half .gz rotations (gzip -6, as logrotate's `compress`). 3a is a
`--full` run into an empty store each time; 3b adds one new 10 MB rotated log per
repetition and runs without --full against the store of the last full run. The
baseline has no incremental mode: it archives the whole directory every time.
"""

from __future__ import annotations

import re
from pathlib import Path

from fabfile.core.store import Store

from ..commands import ssh_argv
from ..context import BenchContext
from ..measure import paired, run_child
from ..results import Row, Side
from ..settings import MB, OWN_BOX

TITLE = "backup.logs"
OP = "<="
TARGET = 0.5  # 3a, --full; 3b (incremental) has 0.05
MEANING = "fab wall time / `ssh tar czf` wall time (lower is better)"
TAR = "tar czf - /opt/zachot/logs"
# GNU tar exits 1 when a file changed while it was read (the live api.log may).
TAR_OK = (0, 1)


def run(ctx: BenchContext) -> list[Row]:
    box = OWN_BOX
    host = ctx.workspace.host(box)
    ctx.data.logs()
    size_mb = ctx.data.logs_size() / MB
    out = ctx.workspace.path("tar-baseline.tar.gz")
    sizes: dict[str, list[int]] = {"tar": [], "full": [], "incremental": []}
    sent: list[str] = []
    stores: list[Path] = []
    inventories: list[Path] = []

    def tar() -> float:
        try:
            done = run_child(
                ssh_argv(host, TAR), stdout_path=out, what="ssh tar czf", ok_codes=TAR_OK
            )
            sizes["tar"].append(out.stat().st_size)
            return done.seconds
        finally:
            out.unlink(missing_ok=True)

    def full() -> float:
        # A fresh store each time; only the newest one is kept, for 3b.
        inventory, store = ctx.workspace.fresh_store()
        seconds = ctx.fab(inventory, [box], "backup.logs", "--full").seconds
        sizes["full"].append(_archive_size(store, box))
        for old in stores:
            ctx.workspace.drop_store(old)
        stores[:], inventories[:] = [store], [inventory]
        return seconds

    def incremental() -> float:
        done = ctx.fab(inventories[0], [box], "backup.logs")
        sizes["incremental"].append(_archive_size(stores[0], box))
        sent.append(_sent(done.stdout))
        return done.seconds

    reps = ctx.settings.reps
    full_s, tar_full = paired(reps, full, tar)
    incr_s, tar_incr = paired(reps, incremental, tar, before=ctx.data.new_log)
    ctx.workspace.drop_store(stores[0])
    mb = _mb_list
    base_label = f"ssh {TAR}"
    full_side = Side(f"fab -H {box} backup.logs --full", full_s, size_mb=size_mb)
    incr_side = Side(f"fab -H {box} backup.logs", incr_s)
    tar_full_side = Side(base_label, tar_full, size_mb=size_mb)
    tar_incr_side = Side(base_label, tar_incr, size_mb=size_mb)
    return [
        Row(
            "3a",
            f"{TITLE} --full, {size_mb:.0f} MB of logs ({box})",
            MEANING,
            OP,
            TARGET,
            ours=full_side,
            baseline=tar_full_side,
            ratio=full_side.value / tar_full_side.value,
            notes=[
                f"archive MB: ours (zstd -1 -T0) {mb(sizes['full'])}, "
                f"tar czf {mb(sizes['tar'][: len(tar_full)])}",
                ctx.startup_note(full_side, tar_full_side),
            ],
        ),
        Row(
            "3b",
            f"{TITLE} incremental after one new 10 MB log ({box})",
            MEANING,
            OP,
            0.05,
            ours=incr_side,
            baseline=tar_incr_side,
            ratio=incr_side.value / tar_incr_side.value,
            notes=[
                f"ours sent per run: {'; '.join(sent)}; archive MB {mb(sizes['incremental'])}",
                ctx.startup_note(incr_side, tar_incr_side),
            ],
        ),
    ]


def _archive_size(store: Path, box: str) -> int:
    ref = Store(store).latest(box, "logs")
    return sum(r.size for r in ref.manifest.files) if ref else 0


def _sent(stdout: str) -> str:
    found = re.search(r"sent (\d+) files \((\d+) bytes raw\)", stdout)
    return f"{found[1]} files, {int(found[2]) / MB:.1f} MB raw" if found else "?"


def _mb_list(sizes: list[int]) -> str:
    return ", ".join(f"{s / MB:.1f}" for s in sizes)
