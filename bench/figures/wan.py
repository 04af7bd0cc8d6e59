"""Figure 7: a distant link and a store with history (issue 12, §4).

The WAN link (sandbox/wan.py) at 30 ms round trip and 100 Mbit/s stands between the
operator and every box; prod7's store (local and on the vault) holds a 730-day history
from sandbox/history.py. Each case is timed through the link against a baseline measured
in the same run, through the same link:

- 7a `backup.replicate` with nothing to send, against `rsync -a --dry-run` of the same store
  to the same vault directory (rsync installed in the vault for the run, and a temporary
  login that may only run `sudo -u vault rsync`, since the vault user is SFTP-only);
  target ≤ 2× (and ≤ 3 s, in the notes);
- 7b `status` of one host: ≤ 3 s;
- 7c `backup.verify` (the newest backup of each kind read back from off-site): ≤ 10 s plus
  the time its bytes take at the link's rate;
- 7d `backup.all` routine run against the OpenSSH script of figure 1: ≤ 1.0×;
- 7e `backup.logs` after one new 10 MB log against `ssh tar czf`, over figure 3's log set
  (≈300 MB) on prod7: ≤ 0.05×.
"""

from __future__ import annotations

import itertools
import shutil

from fabfile.core.manifest import KINDS
from fabfile.core.store import Store

from ..boxdata import BoxData, run_in
from ..commands import ssh_argv
from ..context import BenchContext
from ..measure import Child, paired, run_child
from ..results import Figure, Row, Side
from ..settings import MB, RTO_BOX
from ..wanlab import LINK, WanLab
from .backup_all import baseline_script, copied_sources
from .logs import TAR, TAR_OK, _sent

TITLE = "WAN (30 ms, 100 Mbit/s) with a 730-day history"
OP, TARGET = "<=", 1.0
MEANING = "fab wall time through the link / the baseline's (or the limit) (lower is better)"
FIGURE = Figure(TITLE, MEANING, OP, TARGET)
BOX = RTO_BOX  # prod7: figure 6 resets it after use anyway
DAYS = 730
STATUS_LIMIT = 3.0
VERIFY_FIXED = 10.0
# The live prod's logs are the service user's (0640): read them as the task does, with sudo.
SUDO_TAR = f"sudo {TAR}"


def run(ctx: BenchContext) -> list[Row]:
    lab = WanLab(ctx.workspace, BOX, DAYS // 6 if ctx.settings.quick else DAYS)
    data = BoxData(ctx.settings, box=BOX)
    try:
        made = lab.open()
        print(f"figure 7: {made}", flush=True)
        cases = (
            ("7a", lambda: _replicate(ctx, lab)),
            ("7b", lambda: _status(ctx, lab)),
            ("7c", lambda: _verify(ctx, lab)),
            ("7d", lambda: _backup_all(ctx, lab)),
            ("7e", lambda: _logs(ctx, lab, data)),
        )
        rows = [FIGURE.case(key, case) for key, case in cases]
        for row in rows:
            row.notes.insert(0, made)
        return rows
    finally:
        for line in [*lab.close(), *data.cleanup()]:
            print(f"cleanup: {line}", flush=True)


def _fab(ctx: BenchContext, lab: WanLab, *task: str) -> Child:
    return ctx.fab(lab.inventory, [BOX], *task)


def _replicate(ctx: BenchContext, lab: WanLab) -> Row:
    lab.enable_rsync()
    _fab(ctx, lab, "backup.replicate")  # warm-up: the vault already holds everything
    argv = lab.rsync_argv()

    def rsync() -> float:
        return run_child(argv, what="rsync -a --dry-run").seconds

    ours, base = paired(
        ctx.settings.reps, lambda: _fab(ctx, lab, "backup.replicate").seconds, rsync
    )
    ours_side = Side(f"fab -H {BOX} backup.replicate (nothing to send)", ours)
    base_side = Side("rsync -a --dry-run of the store to the vault", base)
    within = "met" if ours_side.value <= STATUS_LIMIT else "NOT met"
    notes = [f"absolute target ≤ {STATUS_LIMIT:g} s: {within} ({ours_side.value:.2f} s)"]
    return FIGURE.row("7a", "backup.replicate, nothing to send", ours_side, base_side, 2.0, notes)


def _status(ctx: BenchContext, lab: WanLab) -> Row:
    samples = [_fab(ctx, lab, "status").seconds for _ in range(ctx.settings.reps)]
    ours = Side(f"fab -H {BOX} status", samples)
    limit = Side("limit", [STATUS_LIMIT])
    return FIGURE.row("7b", "status, one host", ours, limit, 1.0, [ctx.startup_note(ours, limit)])


def _verify(ctx: BenchContext, lab: WanLab) -> Row:
    nbytes = _newest_bytes(Store(lab.store), BOX)
    budget = VERIFY_FIXED + nbytes / LINK.rate
    samples = [_fab(ctx, lab, "backup.verify").seconds for _ in range(ctx.settings.reps)]
    ours = Side(f"fab -H {BOX} backup.verify", samples)
    limit = Side(f"{VERIFY_FIXED:g} s + {nbytes / MB:.2f} MB at {LINK}", [budget])
    note = f"newest backup of each kind and what it refers to: {nbytes / MB:.2f} MB"
    return FIGURE.row("7c", "backup.verify, newest of each kind", ours, limit, 1.0, [note])


def _newest_bytes(store: Store, box: str) -> int:
    """Bytes verify reads back off-site: each kind's newest backup and its holders."""
    total = 0
    for kind in KINDS:
        ref = store.latest(box, kind)
        if ref is None:
            continue
        for backup_id in {ref.id, *ref.references()}:
            held = store.resolve(box, kind, backup_id)
            total += sum(r.size for r in held.manifest.files if r.stored_in is None)
    return total


def _backup_all(ctx: BenchContext, lab: WanLab) -> Row:
    host = lab.host(BOX)
    # Env and units, as the baseline copies them; the warm-up makes the next runs routine.
    routine = ("backup.all", "--no-offsite")
    _fab(ctx, lab, *routine)
    sources = copied_sources(lab.store, BOX)
    counter = itertools.count(1)

    def openssh() -> float:
        n = f"wan-{next(counter)}"
        script = baseline_script(ctx, host, sources, host.layout.env_file, n)
        try:
            return run_child(["sh", str(script)], what="OpenSSH baseline script").seconds
        finally:
            shutil.rmtree(ctx.workspace.path(f"openssh-{n}"), ignore_errors=True)
            run_in(BOX, ["rm", "-f", "--", f"/opt/zachot/backups/zachot.env.bench-{n}"])

    ours, base = paired(ctx.settings.reps, lambda: _fab(ctx, lab, *routine).seconds, openssh)
    ours_side = Side(f"fab -H {BOX} backup.all --no-offsite (routine)", ours)
    base_side = Side(f"{len(sources)}× ssh sudo cat + ssh sudo cp", base)
    return FIGURE.row("7d", "backup.all routine run", ours_side, base_side, 1.0, [])


def _logs(ctx: BenchContext, lab: WanLab, data: BoxData) -> Row:
    host = lab.host(BOX)
    out = ctx.workspace.path("wan-tar.tar.gz")
    # Figure 3's log set (half plain text, half .gz rotations) beside the live logs: a prod
    # keeps 14 days of rotations (the runbook), not only today's files.
    data.logs()
    size_mb = data.logs_size() / MB
    _fab(ctx, lab, "backup.logs")  # warm-up: the store knows the logs already there
    sent: list[str] = []

    def tar() -> float:
        try:
            return run_child(
                ssh_argv(host, SUDO_TAR), stdout_path=out, what="ssh sudo tar czf", ok_codes=TAR_OK
            ).seconds
        finally:
            out.unlink(missing_ok=True)

    def incremental() -> float:
        done = _fab(ctx, lab, "backup.logs")
        sent.append(_sent(done.stdout))
        return done.seconds

    ours, base = paired(ctx.settings.reps, incremental, tar, before=data.new_log)
    ours_side = Side(f"fab -H {BOX} backup.logs", ours)
    base_side = Side(f"ssh {SUDO_TAR}", base, size_mb=size_mb)
    notes = [
        f"logs on {BOX}: {size_mb:.0f} MB (figure 3's set plus the live logs)",
        f"ours sent per run: {'; '.join(sent)}",
        ctx.startup_note(ours_side, base_side),
    ]
    case = "backup.logs after one new 10 MB log"
    return FIGURE.row("7e", case, ours_side, base_side, 0.05, notes)
