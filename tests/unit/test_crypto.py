"""age encryption at rest: encrypting, decrypting with the operator's identity, reading back."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyrage import x25519

from fabfile.core import crypto, secrets
from fabfile.core.errors import BackupNotFoundError, StoreError, TransferError, UsageError
from fabfile.core.manifest import FileRecord
from fabfile.core.model import BackupSettings, Host, StoreSettings
from fabfile.core.store import Store

pytestmark = pytest.mark.unit

SECRET = b"REDIS_URL=redis://x\nAPI_KEY=canary-0b5e77\n"
NOW = datetime(2026, 11, 24, 15, 15, tzinfo=UTC)


def key_file(path: Path) -> tuple[Path, str]:
    """An identity file as age-keygen writes it; returns (path, public key)."""
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    path.write_text(f"# created: 2026-11-24T15:15:00Z\n# public key: {public}\n{identity}\n")
    path.chmod(0o600)
    return path, public


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    return {name: key_file(tmp_path / f"{name}.txt") for name in ("ops", "other")}


def test_write_encrypted_round_trips_and_hashes_the_ciphertext(tmp_path, keys):
    path, public = keys["ops"]
    target = tmp_path / "zachot.env.age"
    size, digest = crypto.write_encrypted(target, SECRET, [public])
    data = target.read_bytes()
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert data.startswith(crypto.MAGIC)
    assert b"canary" not in data
    assert target.stat().st_mode & 0o777 == 0o600
    assert crypto.decrypt_file(target, path) == SECRET


def test_stream_form_encrypts_a_file_to_several_recipients(tmp_path, keys):
    source = tmp_path / "dump.rdb"
    source.write_bytes(b"REDIS0011" + bytes(range(256)) * 1000)
    target = tmp_path / "dump.rdb.age"
    with source.open("rb") as reader:
        crypto.write_encrypted(target, reader, [keys["ops"][1], keys["other"][1]])
    for path, _ in keys.values():
        assert crypto.decrypt_file(target, path) == source.read_bytes()


def test_wrong_identity_is_one_clear_error(tmp_path, keys):
    target = tmp_path / "x.age"
    crypto.write_encrypted(target, SECRET, [keys["ops"][1]])
    with pytest.raises(crypto.CryptoError, match=r"no matching identity in .*other\.txt"):
        crypto.decrypt_file(target, keys["other"][0])


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        (None, "backup.age_identity is not set"),
        ("missing.txt", "cannot read .*missing.txt: No such file"),
        ("garbage.txt", "holds no age identity"),
    ],
)
def test_missing_or_unusable_identity_says_set_age_identity(tmp_path, keys, identity, expected):
    (tmp_path / "garbage.txt").write_text("# nothing here\nAGE-SECRET-KEY-1NOTBECH32\n")
    target = tmp_path / "x.age"
    crypto.write_encrypted(target, SECRET, [keys["ops"][1]])
    path = tmp_path / identity if identity else None
    with pytest.raises(UsageError, match=expected) as caught:
        crypto.decrypt_file(target, path)
    assert "set backup.age_identity" in caught.value.message


def test_damaged_or_plain_files_do_not_decrypt(tmp_path, keys):
    path, public = keys["ops"]
    target = tmp_path / "x.age"
    crypto.write_encrypted(target, SECRET, [public])
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(crypto.CryptoError, match="damaged age file"):
        crypto.decrypt_file(target, path)
    target.write_bytes(SECRET)
    with pytest.raises(crypto.CryptoError, match="not an age file"):
        crypto.decrypt_file(target, path)


def test_bad_recipient_is_a_usage_error_and_leaves_no_file(tmp_path):
    target = tmp_path / "x.age"
    with pytest.raises(UsageError, match="not a valid age public key"):
        crypto.write_encrypted(target, SECRET, ["age1" + "q" * 58])
    assert not target.exists()


def test_every_kind_is_encrypted_when_recipients_are_set():
    host = Host("web1", backup=BackupSettings(age_recipients=("age1" + "x" * 58,)))
    for kind in ("env", "redis", "units", "logs"):
        assert crypto.recipients_for(host, kind) == host.backup.age_recipients
    assert crypto.recipients_for(Host("web1"), "env") == ()
    assert crypto.same_recipients(crypto.encryption_meta(["b", "a"]), ["a", "b"])
    assert not crypto.same_recipients({}, ["a"])


# -- reading back from the store ---------------------------------------------------------


def encrypted_backup(store: Store, public: str, *, stored_in: str | None = None):
    """An env backup holding SECRET encrypted (or referring to one that does)."""
    with store.begin("web1", "env", now=NOW) as staged:
        name = crypto.stored_name("zachot.env", encrypted=True)
        record = FileRecord(
            name, hashlib.sha256(SECRET).hexdigest(), 0, "/etc/zachot.env", 0o600, "root", "root",
            0.0,
        )  # fmt: skip
        if stored_in is None:
            size, digest = crypto.write_encrypted(staged.target(name), SECRET, [public])
        else:
            held = store.resolve("web1", "env", stored_in).manifest.file(name)
            size, digest = held.size, held.ciphertext_sha256
        staged.add(replace(record, size=size, ciphertext_sha256=digest, stored_in=stored_in))
        staged.meta.update(crypto.encryption_meta([public]))
        return staged.commit()


def test_open_backup_file_gives_plaintext_and_follows_references(tmp_path, keys):
    path, public = keys["ops"]
    store = Store(tmp_path / "store")
    first = encrypted_backup(store, public)
    second = encrypted_backup(store, public, stored_in=first.id)
    host = Host("web1", backup=BackupSettings(age_identity=path))
    for ref in (first, second):
        # By its plaintext name or its stored name: restore code need not care.
        assert crypto.open_backup_file(store, ref, "zachot.env", host) == SECRET
        assert crypto.open_backup_file(store, ref, "zachot.env.age", host) == SECRET
    assert store.problems() == []
    record = second.manifest.file("zachot.env.age")
    assert record.sha256 == hashlib.sha256(SECRET).hexdigest()
    assert (
        record.ciphertext_sha256
        == hashlib.sha256((first.path / record.name).read_bytes()).hexdigest()
    )
    for stored in (store.root / "web1").rglob("*"):
        assert not stored.is_file() or b"canary" not in stored.read_bytes()
    stranger = Host("web1", backup=BackupSettings(age_identity=keys["other"][0]))
    with pytest.raises(crypto.CryptoError, match="no matching identity"):
        crypto.open_backup_file(store, second, "zachot.env", stranger)
    with pytest.raises(UsageError, match="age_identity is not set"):
        crypto.open_backup_file(store, second, "zachot.env", Host("web1"))
    with pytest.raises(BackupNotFoundError):
        crypto.open_backup_file(store, second, "other.env", host)


def test_open_backup_file_refuses_a_damaged_store(tmp_path, keys):
    path, public = keys["ops"]
    store = Store(tmp_path / "store")
    ref = encrypted_backup(store, public)
    stored = ref.path / "zachot.env.age"
    data = bytearray(stored.read_bytes())
    data[len(crypto.MAGIC) + 3] ^= 0x20
    stored.write_bytes(bytes(data))
    host = Host("web1", backup=BackupSettings(age_identity=path))
    with pytest.raises(StoreError, match="checksum does not match the manifest"):
        crypto.open_backup_file(store, ref, "zachot.env", host)


def test_open_backup_file_reads_plain_backups_without_an_identity(tmp_path):
    store = Store(tmp_path / "store")
    with store.begin("web1", "units", now=NOW) as staged:
        staged.target("a.service").write_bytes(b"[Service]\n")
        staged.add(
            FileRecord(
                "a.service", hashlib.sha256(b"[Service]\n").hexdigest(), 10, "/etc/a.service",
                0o644, "root", "root", 0.0,
            )
        )  # fmt: skip
        ref = staged.commit()
    assert crypto.open_backup_file(store, ref, "a.service", Host("web1")) == b"[Service]\n"


def test_register_env_backup_masks_the_newest_backups_values(tmp_path):
    identity, public = key_file(tmp_path / "id.txt")
    encrypted_backup(Store(tmp_path / "store"), public)
    settings = BackupSettings(age_recipients=(public,), age_identity=identity)
    host = Host("web1", store=StoreSettings(path=tmp_path / "store"), backup=settings)
    crypto.register_env_backup(host)
    assert "canary-0b5e77" not in secrets.mask("API_KEY=canary-0b5e77")


def _chunks(data: bytes, size: int = 7) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_a_stream_is_encrypted_as_it_arrives_and_no_plaintext_lands(tmp_path, monkeypatch):
    identity, public = key_file(tmp_path / "id.txt")
    staging = tmp_path / "staging"
    staging.mkdir()
    plain = FileRecord(
        "logs.tar", hashlib.sha256(SECRET).hexdigest(), len(SECRET), "/l", 0o600, "", "", 0.0
    )
    seen: list[list[str]] = []
    with crypto.stored_stream(staging / "logs.tar", [public]) as stored:
        for chunk in _chunks(SECRET):
            stored.write(chunk)
            seen.append(sorted(p.name for p in staging.iterdir()))
    assert seen == [["logs.tar.age"]] * len(seen)  # never a plaintext file, not even briefly
    assert stored.head == SECRET[:8] and stored.path == staging / "logs.tar.age"
    stored_bytes = stored.path.read_bytes()
    assert SECRET not in stored_bytes and oct(stored.path.stat().st_mode & 0o777) == "0o600"
    assert (stored.size, stored.sha256) == (
        len(stored_bytes),
        hashlib.sha256(stored_bytes).hexdigest(),
    )
    assert crypto.decrypt_file(stored.path, identity) == SECRET
    record = stored.record(plain)
    assert record.name == "logs.tar.age" and record.sha256 == plain.sha256
    assert (record.size, record.ciphertext_sha256) == (stored.size, stored.sha256)


def test_a_stream_without_recipients_is_stored_as_it_is(tmp_path):
    plain = FileRecord("logs.tar", "x", len(SECRET), "/l", 0o600, "", "", 0.0)
    with crypto.stored_stream(tmp_path / "logs.tar", []) as stored:
        for chunk in _chunks(SECRET):
            stored.write(chunk)
    assert stored.path.read_bytes() == SECRET and stored.record(plain) is plain
    assert stored.sha256 == hashlib.sha256(SECRET).hexdigest()


@pytest.mark.parametrize("sealed", [True, False])
def test_a_failed_stream_leaves_no_file(tmp_path, sealed):
    _, public = key_file(tmp_path / "id.txt")
    staging = tmp_path / "staging"
    staging.mkdir()
    with (
        pytest.raises(ConnectionError),
        crypto.stored_stream(staging / "logs.tar", [public] if sealed else []) as stored,
    ):
        stored.write(SECRET)
        raise ConnectionError("the link died mid-stream")
    assert list(staging.iterdir()) == []


class _FullDisk:
    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("when", ["mid-stream", "at the end"])
def test_a_full_disk_under_the_ciphertext_is_said_as_our_disk(tmp_path, monkeypatch, when):
    # pyrage words its writer's OSError as an EncryptError; the operator reads "No space
    # left on this machine" (as for every transfer), not a bug report or "broken pipe".
    _, public = key_file(tmp_path / "id.txt")

    def encrypt_io(source, out, keys):
        while source.read(65536) and when == "at the end":
            pass
        out.out = _FullDisk()
        out.write(b"age-encryption.org/v1")
        raise AssertionError("unreachable")

    def wrapped(source, out, keys):
        try:
            encrypt_io(source, out, keys)
        except OSError as exc:
            raise crypto.pyrage.EncryptError(f"OSError: {exc}") from None

    monkeypatch.setattr(crypto.pyrage, "encrypt_io", wrapped)
    with (
        pytest.raises(TransferError, match="on this machine: No space left on device"),
        crypto.stored_stream(tmp_path / "logs.tar", [public]) as stored,
    ):
        for _ in range(64):
            stored.write(b"x" * 65536)
    assert list(tmp_path.iterdir()) == [tmp_path / "id.txt"]
