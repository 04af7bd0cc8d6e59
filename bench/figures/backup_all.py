"""Figure 1: `fab -H box backup.all` (env and units) against plain OpenSSH doing the same copies.

The baseline is a shell script of one `ssh` per file (`sudo cat file > local`) plus
the server-side `sudo cp -p` of the env file that the task also makes. Its file
list is read from the manifests of a warm-up backup, so it copies exactly what
the task copied (drop-ins included, if the box has any).
"""

from __future__ import annotations

import itertools
import shlex
import shutil
from pathlib import Path

from fabfile.core.model import Host
from fabfile.core.store import Store

from ..commands import ssh_argv, ssh_to_file
from ..context import BenchContext
from ..measure import paired, run_child
from ..results import Row, Side
from ..settings import OWN_BOX

TITLE = "backup.all (env + units), one box"
OP, TARGET = "<=", 1.0
MEANING = "fab wall time / OpenSSH script wall time (lower is better)"
SERVER_COPY = "/opt/zachot/backups/zachot.env.bench-{n}"


def copied_sources(store: Path, box: str) -> list[str]:
    """Every server path the task's latest env and units backups hold."""
    backups = [Store(store).latest(box, kind) for kind in ("env", "units")]
    return [record.source for ref in backups if ref for record in ref.manifest.files]


def baseline_script(
    ctx: BenchContext, host: Host, sources: list[str], env_file: str, n: int | str
) -> Path:
    out = ctx.workspace.path(f"openssh-{n}")
    out.mkdir()
    lines = ["set -e"]
    for i, source in enumerate(sources):
        lines.append(ssh_to_file(host, f"sudo cat -- {shlex.quote(source)}", out / f"{i}"))
    copy = f"sudo cp -p -- {shlex.quote(env_file)} {SERVER_COPY.format(n=n)}"
    lines.append(f"{shlex.join(ssh_argv(host, copy))} > /dev/null")
    script = ctx.workspace.path(f"openssh-{n}.sh")
    script.write_text("\n".join(lines) + "\n")
    return script


def run(ctx: BenchContext) -> list[Row]:
    box = OWN_BOX
    env_file = ctx.workspace.host(box).layout.env_file
    # Warm-up (unmeasured): caches on both ends, and the list of what the task copies.
    inventory, warm_store = ctx.workspace.fresh_store()
    ctx.fab(inventory, [box], "backup.all", "--no-offsite")
    sources = copied_sources(warm_store, box)
    counter = itertools.count(1)

    def openssh() -> float:
        n = next(counter)
        script = baseline_script(ctx, ctx.workspace.host(box), sources, env_file, n)
        try:
            return run_child(["sh", str(script)], what="OpenSSH baseline script").seconds
        finally:
            shutil.rmtree(ctx.workspace.path(f"openssh-{n}"), ignore_errors=True)

    def first_backup() -> float:
        inv, store = ctx.workspace.fresh_store()
        try:
            return ctx.fab(inv, [box], "backup.all", "--no-offsite").seconds
        finally:
            ctx.workspace.drop_store(store)

    def repeat_backup() -> float:
        return ctx.fab(inventory, [box], "backup.all", "--no-offsite").seconds

    openssh()  # warm-up of the baseline side
    reps = ctx.settings.reps
    fresh, base = paired(reps, first_backup, openssh)
    again, base2 = paired(reps, repeat_backup, openssh)
    label_base = f"{len(sources)}× ssh sudo cat + ssh sudo cp"
    label_ours = f"fab -H {box} backup.all"
    files = (
        f"files copied: {', '.join(sources)}; the baseline script is plain OpenSSH, "
        "one connection per command, no ControlMaster"
    )
    cases = (
        (
            "1",
            "first backup (fresh store: every file new, server-side copy made)",
            fresh,
            base,
            [files],
        ),
        (
            "1b",
            "routine run (content unchanged: no new bytes, no server copy)",
            again,
            base2,
            ["the baseline still copies every file and makes the server copy"],
        ),
    )
    rows = []
    for key, case, ours_s, base_s, notes in cases:
        ours, baseline = Side(label_ours, ours_s), Side(label_base, base_s)
        rows.append(
            Row(
                key,
                f"{TITLE}, {case}",
                MEANING,
                OP,
                TARGET,
                ours=ours,
                baseline=baseline,
                ratio=ours.value / baseline.value,
                notes=[*notes, ctx.startup_note(ours, baseline)],
            )
        )
    return rows
