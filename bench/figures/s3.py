"""Figure 8: the off-site copy to S3 against SFTP, through the WAN link (issue 11, §5).

prod9's history (sandbox/history.py, DAYS days) is in a private store; a private link at
figure 7's settings (30 ms, 100 Mbit/s) fronts prod9, the vault and a private
`rclone serve s3` (bench/s3lab.py). Each back end has its own baseline through the same link:

- 8a `backup.replicate` into an empty S3 prefix against `rclone copy` of the store's host
  directory into another empty prefix of the same bucket: ≤ 1.2×;
- 8b the same again with nothing new: ≤ 1.0×;
- 8c `backup.replicate` into an empty vault directory against `rsync -a` of the same
  directory to the vault: ≤ 1.2×;
- 8d the same again with nothing new: ≤ 1.0×;
- 8e `backup.verify` (newest of each kind, read back) from S3 against the same from SFTP.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fabfile.core.inventory import load_inventory
from sandbox.history import VAULT_ROOT

from ..commands import fab_argv
from ..context import BenchContext
from ..measure import BenchError, Child, paired, run_child
from ..results import Figure, Row, Side
from ..s3lab import S3Lab, tree_bytes
from ..settings import MB
from ..wanlab import VAULT

TITLE = "Off-site to S3 and SFTP through the WAN link (30 ms, 100 Mbit/s)"
OP, TARGET = "<=", 1.0
MEANING = "fab wall time through the link / the baseline's (lower is better)"
FIGURE = Figure(TITLE, MEANING, OP, TARGET)
BOX = "prod9"
# One repetition of every case must stay within about 3 minutes: a first full copy makes
# requests per file one after another (SFTP: about 8 round trips per file), so 60 days
# (about 130 backups, 2 MB) rather than figure 7's 730.
DAYS = 60
FIRST, ROUTINE = 1.2, 1.0
# Counted (rclone --dump headers; our own request count in tests/sshd): what a routine run
# asks the far end, so which side grows with the history.
ROUTINE_REQUESTS = {
    "s3": "requests, ours: HeadBucket and GET index.json, however many backups; rclone copy: a"
    " LIST per 1000 keys and a HEAD per object (its modification time), 8 at a time",
    "sftp": "ours: a read of the index, however many backups; rsync: the file list both ways"
    " in one stream",
}


def run(ctx: BenchContext) -> list[Row]:
    lab = S3Lab(ctx.workspace, BOX, DAYS // 3 if ctx.settings.quick else DAYS)
    try:
        made = lab.open()
        print(f"figure 8: {made}", flush=True)
        rows = _pairs(ctx, lab, "s3", _rclone(lab)) + _pairs(ctx, lab, "sftp", _rsync(lab))
        rows.append(FIGURE.case("8e", lambda: _verify(ctx, lab)))
        for row in rows:
            row.notes.insert(0, made)
        return rows
    finally:
        for line in lab.close():
            print(f"cleanup: {line}", flush=True)


def _fab(lab: S3Lab, inventory: Path, *task: str) -> Child:
    argv = fab_argv([BOX], *task)
    env = {**lab.env(), "ZACHOT_INVENTORY": str(inventory)}
    return run_child(argv, env=env, what=f"fab -H {BOX} {' '.join(task)} ({inventory.stem})")


@dataclass
class Baseline:
    """One baseline's two runs: into a new, empty destination, and again into the last."""

    label: str
    fresh: Callable[[], str]  # a new destination's name
    copy: Callable[[str], float]  # copy the store's host directory there; seconds
    bytes_there: Callable[[str], str]  # what the destination holds, for the notes
    setup: Callable[[], object] = lambda: None
    last: str = ""

    def first(self) -> float:
        self.last = self.fresh()
        return self.again()

    def again(self) -> float:
        return self.copy(self.last)


def _rclone(lab: S3Lab) -> Baseline:
    def copy(prefix: str) -> float:
        return run_child(lab.rclone_argv(prefix), env=lab.rclone_env(), what="rclone copy").seconds

    return Baseline(
        "rclone copy of the store's host directory to the same bucket",
        lambda: lab.fresh_prefix("rclone"),
        copy,
        lambda prefix: f"rclone's copy {lab.bucket_bytes(prefix) / MB:.2f} MB",
    )


def _rsync(lab: S3Lab) -> Baseline:
    def copy(directory: str) -> float:
        vault = load_inventory(lab.local).host(VAULT)
        remote = f"{VAULT_ROOT}/{directory}/{BOX}/"
        argv = lab.rsync.argv(vault, lab.store / BOX, remote, "--mkpath")
        return run_child(argv, what="rsync -a").seconds

    return Baseline(
        "rsync -a of the store's host directory to the vault",
        lab.fresh_vault_dir,
        copy,
        lambda _: "rsync's copy: the store's bytes",
        setup=lab.rsync.enable,
    )


def _pairs(ctx: BenchContext, lab: S3Lab, kind: str, base: Baseline) -> list[Row]:
    """First full copy and routine run of one back end against its baseline."""
    keys = ("8a", "8b") if kind == "s3" else ("8c", "8d")
    where = "S3" if kind == "s3" else "the SFTP vault"
    last: list[tuple[Path, str]] = []
    outputs: list[str] = []

    def first() -> float:
        last.append(lab.fresh(kind))
        done = _fab(lab, last[-1][0], "backup.replicate")
        outputs.append(done.stdout)
        return done.seconds

    def again() -> float:
        return _fab(lab, last[-1][0], "backup.replicate").seconds

    rows = []
    try:
        base.setup()
        ours, theirs = paired(ctx.settings.reps, first, base.first)
        local = tree_bytes(lab.store / BOX) / MB
        sent = lab.offsite_bytes(kind, last[-1][1]) / MB
        lab.last[kind] = last[-1][0]  # a complete copy: 8e verifies it
        notes = [f"bytes: the store's host directory {local:.2f} MB; our copy {sent:.2f} MB "
                 f"({'age-encrypted manifests and index' if kind == 's3' else 'and the index'});"
                 f" {base.bytes_there(base.last)}", _uploads(outputs[-1], lab, kind)]  # fmt: skip
        ours_side = Side(f"fab -H {BOX} backup.replicate into an empty {kind} destination", ours)
        base_side = Side(f"{base.label}, empty destination", theirs)
        rows.append(
            FIGURE.row(keys[0], f"first full copy to {where}", ours_side, base_side, FIRST, notes)
        )
        ours, theirs = paired(ctx.settings.reps, again, base.again)
        ours_side = Side(f"fab -H {BOX} backup.replicate, nothing new", ours)
        base_side = Side(f"{base.label}, nothing new", theirs)
        notes = [ctx.startup_note(ours_side, base_side), ROUTINE_REQUESTS[kind]]
        routine = f"routine run to {where}"
        rows.append(FIGURE.row(keys[1], routine, ours_side, base_side, ROUTINE, notes))
    except BenchError as exc:
        rows += [FIGURE.failed(k, exc) for k in keys[len(rows) :]]
    return rows


def _uploads(stdout: str, lab: S3Lab, kind: str) -> str:
    """What a first copy costs in requests: each file (and manifest) is one upload, in
    sequence; the baselines' objects for comparison."""
    files = sum(int(n) for n in re.findall(r"\b(\d+) files\b", stdout))
    backups = len(re.findall(r"sent\+verified", stdout))
    objects = sum(1 for f in (lab.store / BOX).rglob("*") if f.is_file())
    if kind == "s3":
        per = "one PUT each, one after another (plus HeadBucket, GET and PUT of the index)"
        theirs = f"rclone copy: {objects} objects, 4 transfers at a time (its default)"
    else:
        per = ("each: open, write (pipelined), close, stat, read back and hash, rename, one"
               " round trip apiece, plus a mkdir per backup")  # fmt: skip
        theirs = f"rsync: {objects} files in one stream"
    return f"ours sent {files} files of {backups} backups, {per}; {theirs}"


def _verify(ctx: BenchContext, lab: S3Lab) -> Row:
    s3_inv, sftp_inv = lab.last.get("s3"), lab.last.get("sftp")
    if s3_inv is None or sftp_inv is None:
        raise BenchError("no complete S3 and SFTP copy to verify (8a or 8c failed)")
    ours, theirs = paired(
        ctx.settings.reps,
        lambda: _fab(lab, s3_inv, "backup.verify").seconds,
        lambda: _fab(lab, sftp_inv, "backup.verify").seconds,
    )
    ours_side = Side(f"fab -H {BOX} backup.verify from S3", ours)
    base_side = Side(f"fab -H {BOX} backup.verify from the SFTP vault", theirs)
    note = "no target in issue 11: S3 against SFTP, the same backups, the same link"
    return FIGURE.row("8e", "backup.verify, newest of each kind, S3 against SFTP", ours_side,
                base_side, 1.0, [note])  # fmt: skip
