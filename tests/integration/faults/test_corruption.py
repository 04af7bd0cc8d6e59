"""Corruption: a flipped byte in a stored backup, a truncated manifest, a missing file.

backup.verify reports it (exit 1; the kind's row says FAILED and an error line names the
file), and every restore refuses that backup before it touches the server, unless --force
says to use it as it is. --force can use bytes that changed; it cannot make a missing file,
an unreadable manifest or a damaged encrypted file usable, and says so in one line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from fabfile.core.crypto import open_backup_file
from fabfile.core.manifest import MANIFEST_NAME

from . import inject
from .lab import ENV, Lab, prod11_lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

FAULT = "corruption"
UNIT_DIR = "/etc/systemd/system"
UNITS = (f"{UNIT_DIR}/zachot-api.service", f"{UNIT_DIR}/zachot-worker.service")
MARKER_KEY = "zachot:fault-marker"  # set after the backups: any Redis restore would drop it
RESTORE = {
    "env": ("restore.env", "--yes"),
    "units": ("restore.units", "--yes"),
    "redis": ("restore.redis", "--yes"),
}


@dataclass(frozen=True)
class Damage:
    kind: str
    name: str  # the file in the backup that is damaged
    how: str  # flip (one bit of one byte), remove, truncate
    says: str  # what verify and the refusal name
    forced: str | None  # None: --force restores it; else what a forced restore fails with


DAMAGES = {
    "units: a flipped byte": Damage(
        "units", "zachot-api.service.age", "flip", "does not match the manifest", "damaged age file"
    ),
    "env: a flipped byte (encrypted)": Damage(
        "env", "zachot.env.age", "flip", "does not match the manifest", "damaged age file"
    ),
    "redis: a flipped byte (encrypted)": Damage(
        "redis", "dump.rdb.age", "flip", "does not match the manifest", "damaged age file"
    ),
    "units: a missing file": Damage(
        "units", "zachot-worker.service.age", "remove", "missing", "missing"
    ),
    "units: a truncated manifest": Damage(
        "units", MANIFEST_NAME, "truncate", "bad manifest", "even --force cannot use it"
    ),
    "env: a truncated manifest": Damage(
        "env", MANIFEST_NAME, "truncate", "bad manifest", "even --force cannot use it"
    ),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        # In the value of Description= for a unit (it stays a valid unit), else in the
        # last bytes, where an age file keeps its last chunk's authentication tag.
        at = data.find(b"Description=")
        data[at + len("Description=") if at >= 0 else len(data) - 3] ^= 0x01
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.unlink()


def server_state(lab: Lab) -> dict[str, object]:
    """What a refused restore must leave exactly as it was."""
    dirs = (UNIT_DIR, "/opt/zachot/envs/prod/etc", "/var/lib/redis")
    globs = " ".join(f"{d}/*.pre-restore.*" for d in dirs)
    kept = lab.fleet.sh(lab.box, f"ls -d {globs} 2>/dev/null; true").stdout.split()
    return {
        **{path: lab.sha256(path) for path in (ENV, *UNITS)},
        "services": lab.active(),
        "kept copies": kept,
        "redis marker": lab.fleet.exec(lab.box, ["redis-cli", "GET", MARKER_KEY]).stdout.strip(),
        "run lock free": inject.run_lock_free(lab.fleet, lab.box),
    }


def verify_rows(stdout: str) -> dict[str, list[str]]:
    """backup.verify's plain table: kind -> its cells."""
    rows = [line.split("\t") for line in stdout.splitlines()]
    return {row[1]: row for row in rows if len(row) == 6 and row[1] != "kind"}


def one_error(run) -> str:
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    return lines[0]


def back_up(lab: Lab, kind: str) -> str:
    """A backup of `kind` (an older good one first for a manifest test); returns its id."""
    args = ("backup.all", "--redis", "--yes") if kind == "redis" else ("backup.all",)
    if kind == "units":
        # Two backups: the damaged one is the newest, an intact older one is still there.
        assert lab.fab(*args).returncode == 0
        lab.sh(f"printf '\\n# changed\\n' >> {UNITS[0]}")
    run = lab.fab(*args)
    assert run.returncode == 0, run.stdout + run.stderr
    return lab.store.latest(lab.box, kind).id


@pytest.mark.fault(
    FAULT, checked="verify exit 1 naming the file; restore refuses, server untouched"
)
@pytest.mark.parametrize("case", list(DAMAGES))
def test_verify_reports_it_and_restore_refuses_it(prod11, case):
    d = DAMAGES[case]
    backup_id = back_up(prod11, d.kind)
    clean = prod11.fab("backup.verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    prod11.fleet.exec(prod11.box, ["redis-cli", "SET", MARKER_KEY, "kept"])
    before = server_state(prod11)

    # Where the bytes are: an unchanged file is kept in the older backup the newest refers to.
    ref = prod11.store.resolve(prod11.box, d.kind, backup_id)
    damage(ref.path / d.name if d.how == "truncate" else prod11.store.file_path(ref, d.name), d.how)

    verify = prod11.fab("backup.verify")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    rows = verify_rows(verify.stdout)
    assert rows[d.kind][-1] == "FAILED", verify.stdout
    assert [k for k, row in rows.items() if row[-1] == "FAILED"] == [d.kind], verify.stdout
    said = [
        ln for ln in verify.stderr.splitlines() if ln.startswith(f"error: {prod11.box}/{d.kind}:")
    ]
    assert any(d.says in ln and d.name in ln for ln in said), verify.stderr
    assert "Traceback" not in verify.stdout + verify.stderr

    refused = prod11.fab(*RESTORE[d.kind], "--from", backup_id)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    line = one_error(refused)
    assert f"refusing {prod11.box}/{d.kind}/{backup_id}" in line and d.says in line, line
    assert server_state(prod11) == before

    forced = prod11.fab(*RESTORE[d.kind], "--from", backup_id, "--force")
    if d.forced is not None:
        assert forced.returncode == 1, forced.stdout + forced.stderr
        assert "Traceback" not in forced.stdout + forced.stderr
        assert d.forced in forced.stderr.strip().splitlines()[-1], forced.stderr
        assert server_state(prod11) == before
    else:
        # The operator said so: the bytes as stored go in, with a warning, and work.
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert "--force: using" in forced.stderr and d.says in forced.stderr
        stored = prod11.store.root / prod11.box / d.kind / backup_id / d.name
        assert prod11.sha256(f"{UNIT_DIR}/{d.name}") == sha256(stored.read_bytes())
        assert prod11.active() == ["active"] * 3


@pytest.mark.fault(
    FAULT, checked="latest skips a damaged newest backup, says so, restores the older"
)
def test_latest_skips_a_newer_backup_whose_manifest_is_damaged(prod11):
    newest = back_up(prod11, "units")
    older = prod11.store.list(prod11.box, "units")[0]
    (prod11.store.root / prod11.box / "units" / newest / MANIFEST_NAME).write_text("{")
    prod11.sh(f"printf 'garbage\\n' > {UNITS[1]}")
    run = prod11.fab("restore.units", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"skipping the newer {prod11.box}/units/{newest}" in run.stderr
    assert f"restore.units from {prod11.box}/{older.id}" in run.stdout
    wanted = open_backup_file(prod11.store, older, "zachot-worker.service", prod11.host())
    assert prod11.sha256(UNITS[1]) == sha256(wanted)
    assert prod11.active() == ["active"] * 3
