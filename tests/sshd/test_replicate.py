"""Encrypted backups and backup.replicate against real sshds.

The vault is a second sshd that only speaks SFTP (ForceCommand internal-sftp,
as on the sandbox's vault box), started in a temp dir; the backed-up host is
the shared `sshd` fixture with the zachot layout from test_backups.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pyrage import x25519

from fabfile.core import crypto, offsite, offsite_backend, offsite_sftp
from fabfile.core.backups.planner import back_up, context_for
from fabfile.core.errors import ExitCode, UsageError
from fabfile.core.model import BackupSettings, Host, StoreSettings
from fabfile.core.store import Store
from tests.sshd.helpers import CANARY, ROOT, free_port, make_server, start_sshd, write_inventory

pytestmark = pytest.mark.sshd

DAY = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def vault(sshd, tmp_path_factory) -> tuple[Host, Path]:
    """(a Host for an SFTP-only sshd, the directory its SFTP sessions start in)."""
    root = tmp_path_factory.mktemp("vault")
    home = root / "home"
    home.mkdir(mode=0o700)
    port = free_port()
    proc, _log = start_sshd(
        root,
        port,
        sshd.root,
        "Subsystem sftp internal-sftp",
        f"ForceCommand internal-sftp -d {home}",
    )
    key = sshd.host.known_hosts.read_text().split(" ", 1)[1]
    known = root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {key}")
    yield replace(sshd.host, name="vault", port=port, known_hosts=known), home
    proc.terminate()
    proc.wait(timeout=10)


def new_key(path: Path) -> str:
    identity = x25519.Identity.generate()
    path.write_text(f"# public key: {identity.to_public()}\n{identity}\n")
    path.chmod(0o600)
    return str(identity.to_public())


@pytest.fixture
def host(sshd, vault, tmp_path) -> Host:
    public = new_key(tmp_path / "age.txt")
    backup = BackupSettings(
        age_recipients=(public,),
        age_identity=tmp_path / "age.txt",
        offsite_host="vault",
        offsite_dir=f"t-{secrets.token_hex(4)}/zachot",
    )
    return replace(
        sshd.host,
        layout=make_server(tmp_path / "server"),
        store=StoreSettings(path=tmp_path / "store"),
        backup=backup,
    )


def backup(host: Host, kinds: list[str], at: datetime = DAY) -> str:
    return back_up(context_for(host, at), kinds)


def remote_dir(host: Host, vault, *parts: str) -> Path:
    return vault[1] / host.backup.offsite_dir / host.name / Path(*parts)


def replicate(host: Host, vault, **kwargs) -> list[offsite.Row]:
    with offsite_sftp.SftpBackend.open(vault[0]) as box:
        return offsite.replicate(host, box, **kwargs)


def status(host: Host, vault, **kwargs) -> list[offsite.OffsiteState]:
    with offsite_sftp.SftpBackend.open(vault[0]) as box:
        return offsite.offsite_status(host, box, **kwargs)


# -- encryption at rest ---------------------------------------------------------------


def test_encrypted_env_backup_restores_with_the_identity_only(host, tmp_path):
    plaintext = Path(host.layout.env_file).read_bytes()
    backup(host, ["env"])
    backup(host, ["env"], at=DAY + timedelta(days=1))  # unchanged: dedupes on the plaintext
    store = Store(host.store.path)
    first, second = store.list("local", "env")
    record = first.manifest.file("zachot.env.age")
    stored = (first.path / "zachot.env.age").read_bytes()
    assert first.manifest.file("zachot.env") is None
    assert record.sha256 == hashlib.sha256(plaintext).hexdigest()
    assert record.ciphertext_sha256 == hashlib.sha256(stored).hexdigest()
    assert record.size == len(stored)
    assert second.manifest.file("zachot.env.age").stored_in == first.id
    assert first.manifest.meta["keys"] == ["REDIS_URL", "WORKER_CONCURRENCY", "API_KEY"]
    assert first.manifest.meta["encryption"]["recipients"] == list(host.backup.age_recipients)
    # No plaintext anywhere in the store, scratch files included.
    for path in host.store.path.rglob("*"):
        assert not path.is_file() or CANARY.encode() not in path.read_bytes(), path
    assert store.problems() == []
    for ref in (first, second):
        assert crypto.open_backup_file(store, ref, "zachot.env", host) == plaintext
    stranger = replace(host.backup, age_identity=tmp_path / "stranger.txt")
    new_key(tmp_path / "stranger.txt")
    with pytest.raises(crypto.CryptoError, match="no matching identity"):
        crypto.open_backup_file(store, second, "zachot.env", replace(host, backup=stranger))
    without = replace(host.backup, age_identity=None)
    with pytest.raises(UsageError, match=r"set backup\.age_identity"):
        crypto.open_backup_file(store, second, "zachot.env", replace(host, backup=without))


def test_new_recipients_get_a_fresh_copy_not_a_reference(host, tmp_path):
    backup(host, ["env"])
    rotated = replace(
        host.backup,
        age_recipients=(new_key(tmp_path / "new.txt"),),
        age_identity=tmp_path / "new.txt",
    )
    host2 = replace(host, backup=rotated)
    backup(host2, ["env"], at=DAY + timedelta(days=1))
    newer = Store(host.store.path).latest("local", "env")
    assert newer.manifest.file("zachot.env.age").stored_in is None
    assert crypto.open_backup_file(Store(host.store.path), newer, "zachot.env", host2)


# -- backup.replicate -----------------------------------------------------------------


def test_replicate_sends_verifies_and_is_incremental(host, vault):
    backup(host, ["env", "units", "logs"])
    store = Store(host.store.path)
    dry = replicate(host, vault, dry_run=True)
    assert {r.result for r in dry} == {"would send"}
    assert not remote_dir(host, vault).exists()

    rows = replicate(host, vault)
    assert [(r.kind, r.action, r.result) for r in rows] == [
        ("env", "send", "sent+verified"),
        ("units", "send", "sent+verified"),
        ("logs", "send", "sent+verified"),
    ]
    for ref in store.list("local"):
        there = remote_dir(host, vault, ref.kind, ref.id)
        sent = sorted(p.name for p in there.iterdir())
        assert sent == sorted([*(f.name for f in ref.manifest.files), "manifest.json"])
        for name in sent:
            local = (ref.path / name).read_bytes()
            if name == "manifest.json":  # the vault's: no plaintext hashes, no key names
                local = offsite.offsite_manifest(ref)
            assert (there / name).read_bytes() == local
            assert (there / name).stat().st_mode & 0o077 == 0
        assert all(f.name.endswith(".age") for f in ref.manifest.files), ref.kind
        assert there.stat().st_mode & 0o077 == 0
    for path in remote_dir(host, vault).rglob("*"):
        assert not path.is_file() or CANARY.encode() not in path.read_bytes()

    # Only what the vault lacks goes the second time.
    backup(host, ["env"], at=DAY + timedelta(days=1))
    again = replicate(host, vault)
    assert [(r.kind, r.result) for r in again] == [
        ("env", "present"),
        ("env", "sent+verified"),
        ("units", "present"),
        ("logs", "present"),
    ]
    assert (
        again[1].detail
        == "1 files, " + str(len(offsite.offsite_manifest(store.latest("local", "env")))) + " bytes"
    )  # an unchanged env: only its manifest, the bytes stay in the holder
    assert all(state.ok for state in status(host, vault)), status(host, vault)


def test_flipped_byte_on_the_vault_is_caught(host, vault):
    backup(host, ["units"])
    replicate(host, vault)
    ref = Store(host.store.path).latest("local", "units")
    target = remote_dir(host, vault, "units", ref.id, "zachot-worker.service.age")
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    [shallow] = status(host, vault, deep=False)
    assert shallow.ok  # same size: only reading it back can tell
    [deep] = status(host, vault)
    assert (deep.ok, deep.remote) == (False, "complete")
    assert "zachot-worker.service.age: checksum mismatch" in deep.detail


def test_unencrypted_env_is_refused_other_kinds_go_only_when_opted_out(host, vault):
    plain = replace(host, backup=replace(host.backup, age_recipients=()))
    backup(plain, ["env", "units"])
    [outcome] = offsite.replicate_hosts([plain], {"vault": vault[0]}.__getitem__)
    assert not outcome.ok and "backup.offsite_plain" not in outcome.detail  # env: never
    assert not remote_dir(host, vault).exists()  # plain units too, without the opt-out
    plain = replace(plain, backup=replace(plain.backup, offsite_plain=("units",)))
    [outcome] = offsite.replicate_hosts([plain], {"vault": vault[0]}.__getitem__)
    assert not outcome.ok and outcome.exit_code != 0
    assert "set backup.age_recipients" in outcome.detail
    assert not remote_dir(host, vault, "env").exists()
    [units] = Store(host.store.path).list("local", "units")
    assert (remote_dir(host, vault, "units", units.id) / "manifest.json").exists()
    env_state, units_state = status(plain, vault)
    assert (env_state.remote, env_state.ok) == ("missing", False)
    assert "set backup.age_recipients" in env_state.detail
    assert units_state.ok

    # Encryption turned on later: the plain backup stays local without failing every run.
    backup(host, ["env"], at=DAY + timedelta(days=1))
    rows = {r.id: r for r in replicate(host, vault) if r.kind == "env"}
    old, new = Store(host.store.path).list("local", "env")
    assert (rows[old.id].result, rows[old.id].ok) == ("stays local", True)
    assert "newer encrypted backup" in rows[old.id].detail
    assert (rows[new.id].result, rows[new.id].ok) == ("sent+verified", True)
    assert not (remote_dir(host, vault, "env", old.id)).exists()
    stored = remote_dir(host, vault, "env", new.id, "zachot.env.age").read_bytes()
    assert b"REDIS_URL" not in stored and stored.startswith(b"age-encryption.org/v1")


def test_dead_vault_or_none_configured_is_one_clear_error(host, vault):
    backup(host, ["units"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    dead = replace(vault[0], port=closed_port)
    nowhere = replace(host, name="other", backup=replace(host.backup, offsite_host=None))
    down, unset = offsite.replicate_hosts([host, nowhere], {"vault": dead}.__getitem__)
    assert (down.ok, down.exit_code) == (False, ExitCode.UNREACHABLE)
    assert "vault" in down.detail and "connection refused" in down.detail
    assert (unset.ok, unset.exit_code) == (False, ExitCode.USAGE)
    assert "set backup.offsite_host" in unset.detail


def test_interrupted_upload_never_looks_complete_and_resumes(host, vault, monkeypatch):
    backup(host, ["units"])
    real_open = offsite_backend.open_local

    class Dying:
        """The local file dies after the first block, as on a yanked disk."""

        def __init__(self, path: Path) -> None:
            self.inner = real_open(path)
            self.reads = 0

        def read(self, n: int) -> bytes:
            self.reads += 1
            if self.reads > 1:
                raise OSError(5, "Input/output error")
            return self.inner.read(10)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

    opened: list[str] = []

    def flaky(path: Path):
        opened.append(path.name)
        return Dying(path) if path.name == "zachot-worker.service.age" else real_open(path)

    monkeypatch.setattr(offsite_backend, "open_local", flaky)
    [row] = replicate(host, vault)
    assert (row.action, row.result) == ("send", "FAILED")
    assert "Input/output error" in row.detail
    ref = Store(host.store.path).latest("local", "units")
    there = remote_dir(host, vault, "units", ref.id)
    names = sorted(p.name for p in there.iterdir())
    assert "manifest.json" not in names and not [n for n in names if ".part-" in n]
    assert "zachot-worker.service.age" not in names  # no half file under its name
    [state] = status(host, vault)
    assert (state.ok, state.remote) == (False, "incomplete")

    monkeypatch.setattr(offsite_backend, "open_local", real_open)
    [row] = replicate(host, vault)
    assert (row.action, row.result) == ("resume", "sent+verified")
    [state] = status(host, vault)
    assert state.ok, state


def test_cli_replicate_with_encryption_and_refusal(host, vault, tmp_path):
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
    }
    inventory.write_text(yaml.safe_dump(data))
    env = {**os.environ, "ZACHOT_INVENTORY": str(inventory)}
    fab = Path(sys.executable).parent / "fab"

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [fab, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert CANARY not in done.stdout + done.stderr
        return done

    assert run("-H", "local", "backup.all", "--no-offsite").returncode == 0
    dry = run("backup.replicate", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would send" in dry.stdout and not remote_dir(host, vault).exists()
    sent = run("backup.replicate")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.count("sent+verified") == 2
    again = run("backup.replicate")
    assert again.returncode == 0 and again.stdout.count("present") == 2
    as_json = run("backup.replicate", "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert {(r["kind"], r["result"], r["ok"]) for r in rows} == {
        ("env", "present", True),
        ("units", "present", True),
    }

    del data["all"]["vars"]["backup"]["age_recipients"]
    inventory.write_text(yaml.safe_dump(data))
    assert run("-H", "local", "backup.env").returncode == 0  # stored plain now
    refused = run("backup.replicate")
    assert refused.returncode == 1
    assert "REFUSED" in refused.stdout
    assert refused.stderr.count("\n") == 1 and "set backup.age_recipients" in refused.stderr

    # --offsite asked for on a host with nowhere to send it: one line, exit 2, nothing taken;
    # without the flag, the config's default (off-site when configured) just skips it.
    del data["all"]["vars"]["backup"]["offsite_host"]
    inventory.write_text(yaml.safe_dump(data))
    before = sorted(p.name for p in (host.store.path / "local" / "env").iterdir())
    asked = run("-H", "local", "backup.all", "--offsite")
    assert asked.returncode == 2, asked.stdout + asked.stderr
    assert asked.stderr.count("\n") == 1 and "local has no off-site copy configured" in asked.stderr
    assert sorted(p.name for p in (host.store.path / "local" / "env").iterdir()) == before
    assert run("-H", "local", "backup.all").returncode == 0
