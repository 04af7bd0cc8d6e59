"""backup.replicate's memo of the off-site manifests' digests (offsite.ManifestMemo).

With nothing to send, replicate compares each backup with the vault's index without
re-serialising its manifest; a backup whose off-site manifest differs must still go.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pytest

from fabfile.core import offsite
from fabfile.core.manifest import MANIFEST_NAME, FileRecord, Manifest
from fabfile.core.model import BackupSettings, Host, StoreSettings
from fabfile.core.offsite_backend import RemoteBackup
from fabfile.core.store import OFFSITE_DIGESTS_NAME, Store

pytestmark = pytest.mark.unit

IDS = ("20261101T000000Z", "20261102T000000Z", "20261103T000000Z")
DATA = b"[Unit]\nDescription=api\n"


class Vault:
    """The vault's side: an index, and a record of every request beyond reading it."""

    name = "vault"

    def __init__(self, index: bytes) -> None:
        self.index, self.requests = index, []

    def read_optional(self, path: str, limit: int) -> bytes:
        return self.index

    def alive(self) -> bool:
        return True

    def workers(self, n: int) -> contextlib.AbstractContextManager[list[Vault]]:
        return contextlib.nullcontext([self])

    def probe(self, path: str) -> RemoteBackup | None:
        self.requests.append(("probe", path))
        return None  # not there: the backup is sent

    def makedirs(self, path: str) -> None:
        self.requests.append(("makedirs", path))

    def remove(self, path: str) -> None:
        self.requests.append(("remove", path))

    def upload(self, item, directory: str, what: str) -> None:
        self.requests.append(("upload", f"{directory}/{item.name}"))
        if item.name == offsite.INDEX_NAME:
            self.index = item.data


def write_backup(root: Path, backup_id: str, meta: dict) -> None:
    path = root / "web1" / "units" / backup_id
    path.mkdir(mode=0o700, parents=True)
    sha = hashlib.sha256(DATA).hexdigest()
    record = FileRecord("zachot-api.service", sha, len(DATA), "/etc/x", 0o644, "root", "root", 0)
    created = f"{backup_id[:4]}-{backup_id[4:6]}-{backup_id[6:8]}T00:00:00Z"
    manifest = Manifest(1, backup_id, "web1", "units", created, (record,), meta)
    for name, data in (("zachot-api.service", DATA), (MANIFEST_NAME, manifest.to_json().encode())):
        (path / name).write_bytes(data)
        (path / name).chmod(0o600)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    for backup_id in IDS:
        write_backup(tmp_path, backup_id, {"n": 1})
    backup = BackupSettings(offsite_plain=("units",))
    return Host(name="web1", store=StoreSettings(path=tmp_path), backup=backup)


def replicate(host: Host, vault: Vault) -> list[str]:
    return [row.result for row in offsite.replicate(host, vault)]


def test_a_second_run_uses_the_memo_and_sends_nothing(host, monkeypatch):
    store = Store(host.store.path)
    vault = Vault(offsite.index_of("web1", store.list("web1")))
    assert replicate(host, vault) == ["present"] * 3 and vault.requests == []
    memo = json.loads((host.store.path / "web1" / OFFSITE_DIGESTS_NAME).read_text())
    assert len(memo["manifests"]) == 3

    def no_serialising(ref):
        raise AssertionError("re-serialised a manifest the memo knows")

    monkeypatch.setattr(offsite, "offsite_manifest", no_serialising)
    assert replicate(host, vault) == ["present"] * 3 and vault.requests == []


def test_a_changed_local_manifest_is_sent_again_despite_the_memo(host):
    store = Store(host.store.path)
    vault = Vault(offsite.index_of("web1", store.list("web1")))
    replicate(host, vault)  # the memo now vouches for all three
    # The local manifest changes (new bytes): its off-site copy no longer matches the index.
    path = host.store.path / "web1" / "units" / IDS[1]
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
    write_backup(host.store.path, IDS[1], {"n": 2})
    assert replicate(host, vault) == ["present", "sent+verified", "present"]
    sent = [name for action, name in vault.requests if action == "upload"]
    sent = [name for name in sent if not name.endswith(offsite.INDEX_NAME)]
    assert sent == [f"{offsite.backup_dir(host, 'units', IDS[1])}/zachot-api.service",
                        f"{offsite.backup_dir(host, 'units', IDS[1])}/{MANIFEST_NAME}"]  # fmt: skip


def test_a_damaged_memo_is_only_a_cache(host):
    store = Store(host.store.path)
    vault = Vault(offsite.index_of("web1", store.list("web1")))
    (host.store.path / "web1" / OFFSITE_DIGESTS_NAME).write_text('{"manifests": {"x": [1, 2]}}')
    assert store.offsite_digests("web1") == {}
    assert replicate(host, vault) == ["present"] * 3 and vault.requests == []
    assert len(store.offsite_digests("web1")) == 3
    assert store.problems("web1") == []  # the memo is an expected entry of the host dir
