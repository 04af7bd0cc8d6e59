# ruff: noqa: F811  (the fixtures host and vault come from test_replicate)
"""Off-site retention and rolling read-back against a real SFTP-only vault (issue 12 §5).

The history: eight env backups, one a day, whose contents go A B A A C D D E, so days 2
and 3 hold their bytes in day 0 and day 6 in day 5. All eight went off-site; the store
then lost days 0-3 (an older local prune), so they are only on the vault.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from fabfile.core import offsite, offsite_sftp
from fabfile.core.manifest import MANIFEST_NAME, Manifest
from fabfile.core.model import Host
from fabfile.core.prune import (
    KEPT_LOCALLY,
    LEFTOVER,
    NEWEST_READ_BACK,
    prune_offsite_host,
    prune_store,
)
from fabfile.core.readback import rolling_read_back
from fabfile.core.retention import Policy
from fabfile.core.store import READ_BACK_NAME, ReadBack, Store
from tests.sshd.helpers import fab, write_inventory
from tests.sshd.test_replicate import DAY, backup, host, remote_dir, replicate, vault  # noqa: F401

pytestmark = pytest.mark.sshd

CONTENTS = "ABAACDDE"
STRAY = "20261020T000000Z"  # a directory an interrupted run left on the vault, no manifest
POLICY = Policy(keep_last=2)


def history(host: Host, vault) -> list[str]:
    env_file = Path(host.layout.env_file)
    original = env_file.read_text()
    for n, tag in enumerate(CONTENTS):
        env_file.write_text(f"{original}EXTRA=version-{tag}\n")
        backup(host, ["env"], DAY + timedelta(days=n))
    store = Store(host.store.path)
    ids = [ref.id for ref in store.list("local", "env")]
    assert store.latest("local", "env").manifest.files[0].stored_in is None
    assert all(row.ok for row in replicate(host, vault))
    for ref in store.list("local", "env")[:4]:
        store.delete(ref)
    stray = remote_dir(host, vault, "env", STRAY)
    stray.mkdir(mode=0o700)
    (stray / "zachot.env.age").write_bytes(b"half an upload")
    # The vault read day 3 back intact once: the newest read back off-site.
    store.record_read_backs("local", {("offsite", "env", ids[3]): ReadBack(DAY, True)})
    return ids


def prune(host: Host, vault, *, apply: bool):
    """backup.prune's two steps for env: the store first, then the vault."""
    local = prune_store(host, POLICY, kinds=("env",), apply=apply)
    kept = {r.kind: {d.id for d in r.decisions if d.keep} for r in local}
    [result] = prune_offsite_host(
        host, lambda _name: vault[0], POLICY, kinds=("env",), local_kept=kept, apply=apply
    )
    return result


def on_vault(host: Host, vault) -> dict[str, bool]:
    """Backup directory -> complete (has its manifest)."""
    kind_dir = remote_dir(host, vault, "env")
    return {p.name: (p / MANIFEST_NAME).exists() for p in sorted(kind_dir.iterdir())}


def indexed(host: Host, vault) -> list[str]:
    with offsite_sftp.SftpBackend.open(vault[0]) as box:
        return sorted(i for _k, i in offsite.read_index(box, host).backups)


def dangling(host: Host, vault) -> list[str]:
    """References of complete backups on the vault to anything not complete there."""
    there = on_vault(host, vault)
    found = []
    for backup_id, complete in there.items():
        if complete:
            path = remote_dir(host, vault, "env", backup_id, MANIFEST_NAME)
            manifest = Manifest.from_json(path.read_text(), where=str(path))
            found += [f"{backup_id} -> {r.stored_in}" for r in manifest.files
                      if r.stored_in and not there.get(r.stored_in)]  # fmt: skip
    return found


def test_offsite_prune_applies_the_rules_and_is_a_dry_run_first(host, vault):
    ids = history(host, vault)
    before = on_vault(host, vault)

    planned = prune(host, vault, apply=False)
    assert on_vault(host, vault) == before  # a dry run deletes nothing
    reasons = {d.id: d.reasons for d in planned.decisions}
    assert reasons[ids[7]] == ("last 2", KEPT_LOCALLY)
    assert reasons[ids[6]] == ("last 2", KEPT_LOCALLY)
    assert reasons[ids[5]] == (KEPT_LOCALLY, f"used by {ids[6]}")
    assert reasons[ids[3]] == (NEWEST_READ_BACK,)
    assert reasons[ids[0]] == (f"used by {ids[3]}",)  # only off-site, kept for a kept one
    assert [d.id for d in planned.forget] == [ids[4], ids[2], ids[1]]  # newest first
    assert planned.leftovers == (STRAY,)

    done = prune(host, vault, apply=True)
    assert done.deleted == (STRAY, ids[4], ids[2], ids[1]) and not done.error
    kept = sorted([ids[0], ids[3], ids[5], ids[6], ids[7]])
    assert on_vault(host, vault) == dict.fromkeys(kept, True)
    assert indexed(host, vault) == kept
    assert dangling(host, vault) == []
    with offsite_sftp.SftpBackend.open(vault[0]) as box:
        states = offsite.offsite_status(host, box)  # every byte read back
    assert [(s.id, s.ok) for s in states] == [(i, True) for i in kept], states

    again = prune(host, vault, apply=True)
    assert again.deleted == () and again.leftovers == ()


@pytest.mark.fault(
    "interrupted off-site prune",
    checked="link dies after the first manifest is removed: no kept or complete backup "
    "refers to a deleted one, the index lists none being deleted, a re-run finishes",
)
def test_offsite_prune_cut_after_its_first_delete_leaves_no_dangling_reference(
    host, vault, monkeypatch
):
    ids = history(host, vault)
    real_remove = offsite_sftp.SftpBackend.remove

    def remove_then_die(self, path: str) -> None:
        real_remove(self, path)
        if path.endswith(MANIFEST_NAME):
            self.sftp.get_channel().close()  # the link goes; the next request fails

    monkeypatch.setattr(offsite_sftp.SftpBackend, "remove", remove_then_die)
    cut = prune(host, vault, apply=True)
    assert "run it again to finish" in cut.error
    state = on_vault(host, vault)
    assert state[STRAY] is False  # its manifest-less files are still there
    assert all(state[i] for i in (ids[0], ids[3], ids[5], ids[6], ids[7]))
    assert dangling(host, vault) == []
    assert set(indexed(host, vault)) == {ids[0], ids[3], ids[5], ids[6], ids[7]}

    monkeypatch.setattr(offsite_sftp.SftpBackend, "remove", real_remove)
    finished = prune(host, vault, apply=True)
    assert not finished.error
    assert sorted(finished.deleted) == sorted([STRAY, ids[4], ids[2], ids[1]])
    assert on_vault(host, vault) == dict.fromkeys(sorted([ids[0], ids[3], *ids[5:]]), True)
    assert dangling(host, vault) == []


def test_rolling_read_back_covers_every_backup_once_and_catches_vault_damage(host, vault):
    ids = history(host, vault)
    store = Store(host.store.path)
    find = lambda _name: vault[0]  # noqa: E731
    newest = {("local", "env", ids[7]): ReadBack(DAY, True)}
    everything = {("local", "env", i) for i in ids[4:]} | {("offsite", "env", i) for i in ids}
    read, runs = [], 0
    while set(read) | set(newest) | {("offsite", "env", ids[3])} < everything:
        runs += 1
        now = DAY + timedelta(days=30, hours=runs)
        rows = rolling_read_back(host, find, budget=1, done=newest, now=now)
        assert len(rows) == 1 and rows[0].ok, rows
        key = (rows[0].where, rows[0].kind, rows[0].id)
        assert key not in read
        read.append(key)
    assert runs == len(everything) - 2  # one each, the newest and day 3 (read) aside
    log = store.read_backs("local")
    assert set(log) == everything
    assert oct((host.store.path / "local" / READ_BACK_NAME).stat().st_mode & 0o777) == "0o600"

    damaged = remote_dir(host, vault, "env", ids[0], "zachot.env.age")
    damaged.write_bytes(b"X" + damaged.read_bytes()[1:])
    found = []
    for run in range(len(everything)):
        now = DAY + timedelta(days=60, hours=run)
        found += rolling_read_back(host, find, budget=1, done=newest, now=now)
    bad = [r for r in found if not r.ok]
    assert [(r.where, r.id) for r in bad] == [("offsite", ids[0])]
    assert "checksum mismatch" in bad[0].detail


def inventory_with_vault(host: Host, vault, tmp_path: Path, **backup: object) -> Path:
    inventory = write_inventory(host, tmp_path / "inv.yml")
    data = yaml.safe_load(inventory.read_text())
    data["all"]["hosts"]["vault"] = {"address": vault[0].address, "port": vault[0].port}
    data["all"]["vars"]["known_hosts"] = str(tmp_path / "known_hosts")
    (tmp_path / "known_hosts").write_text(
        host.known_hosts.read_text() + vault[0].known_hosts.read_text()
    )
    data["all"]["vars"]["backup"] = {
        "age_recipients": list(host.backup.age_recipients),
        "age_identity": str(host.backup.age_identity),
        "offsite_host": "vault",
        "offsite_dir": host.backup.offsite_dir,
        **backup,
    }
    inventory.write_text(yaml.safe_dump(data))
    return inventory


def test_cli_prune_offsite_json_then_yes_and_verify_lists_read_backs(host, vault, tmp_path):
    ids = history(host, vault)
    backup(host, ["units"], DAY + timedelta(days=8))
    assert all(row.ok for row in replicate(host, vault))
    inv = inventory_with_vault(host, vault, tmp_path, keep_last=2, keep_daily=0, keep_weekly=0,
                               keep_monthly=0, read_budget_mib=0, max_age_days=3650)  # fmt: skip

    dry = fab(inv, "-H", "local", "backup.prune", "--kind", "env", "--json")
    assert dry.returncode == 0, dry.stderr
    rows = json.loads(dry.stdout)
    remote = {r["id"]: r for r in rows if r["where"] == "offsite"}
    assert {i for i, r in remote.items() if r["action"] == "prune"} == {
        STRAY, ids[4], ids[2], ids[1]
    }  # fmt: skip
    assert remote[STRAY]["why"] == LEFTOVER
    assert f"Would prune vault:local/env/{ids[1]}" in dry.stderr  # the tables: on stderr
    assert len(on_vault(host, vault)) == 9

    local_only = fab(inv, "-H", "local", "backup.prune", "--kind", "env", "--no-offsite")
    assert local_only.returncode == 0 and "off-site copy" not in local_only.stdout

    done = fab(inv, "-H", "local", "backup.prune", "--kind", "env", "--yes")
    assert done.returncode == 0, done.stderr
    assert f"Pruned vault:local/env/{ids[4]}" in done.stdout
    assert sorted(on_vault(host, vault)) == sorted([ids[0], ids[3], ids[5], ids[6], ids[7]])

    verify = fab(inv, "-H", "local", "backup.verify", "--read-budget", "1GiB", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    read = [r for r in json.loads(verify.stdout) if r.get("read_back")]
    # Every older backup, here and off-site (the newest are checked anyway).
    assert {(r["where"], r["id"]) for r in read} == {
        ("local", ids[5]), ("local", ids[6]),
        *(("offsite", i) for i in (ids[0], ids[3], ids[5], ids[6])),
    }  # fmt: skip
    listing = json.loads(fab(inv, "-H", "local", "backup.list", "--json").stdout)
    assert all(row["read_back"]["local"]["ok"] for row in listing)
    assert all(row["read_back"]["offsite"]["ok"] for row in listing)
    table = fab(inv, "-H", "local", "backup.list").stdout.splitlines()
    assert table[1].split("\t")[-2:] == ["read back", "off-site"]
    cells = [cell for line in table[2:] for cell in line.split("\t")[-2:]]
    assert cells and all(cell.endswith("s ago") for cell in cells), cells
    when = datetime.now(UTC) - timedelta(seconds=30)
    log = Store(host.store.path).read_backs("local")
    assert all(entry.at > when for entry in log.values())
