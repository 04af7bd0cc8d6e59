"""The vault's index (offsite.Index): what it holds, what it accepts back, and the
replicate table's summary of backups already there."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fabfile.core import offsite, offsite_sftp
from fabfile.core.manifest import FileRecord, Manifest
from fabfile.core.store import BackupRef

pytestmark = pytest.mark.unit

PLAIN_SHA, CIPHER_SHA = "a" * 64, "b" * 64


def ref(backup_id: str, *, stored_in: str | None = None) -> BackupRef:
    record = FileRecord("zachot.env.age", PLAIN_SHA, 10, "/x", 0o600, "root", "root", 0.0)
    record = replace(record, ciphertext_sha256=CIPHER_SHA, stored_in=stored_in)
    meta = {"keys": ["API_SECRET_KEY"], "deployed": {}}
    created = f"{backup_id[:4]}-{backup_id[4:6]}-{backup_id[6:8]}T00:00:00Z"
    manifest = Manifest(1, backup_id, "web1", "env", created, (record,), meta)
    return BackupRef("web1", "env", backup_id, Path("/nowhere"), manifest)


def parse(data: bytes) -> dict:
    return offsite._parse_index(json.loads(data), "web1")


def test_index_holds_sizes_and_ciphertext_hashes_and_reads_back():
    first, second = ref("20261101T000000Z"), ref("20261102T000000Z", stored_in="20261101T000000Z")
    data = offsite.index_of("web1", [second, first])
    assert PLAIN_SHA.encode() not in data and b"API_SECRET_KEY" not in data
    found = parse(data)
    assert list(found) == [("env", first.id), ("env", second.id)]  # oldest first
    assert found[("env", first.id)].files["zachot.env.age"] == 10
    assert found[("env", first.id)].sha256["zachot.env.age"] == CIPHER_SHA
    assert set(found[("env", second.id)].files) == {"manifest.json"}  # bytes in the holder
    assert all(there.complete for there in found.values())
    assert offsite._differences(found[("env", second.id)], offsite._expected(second)) == []


@pytest.mark.parametrize(
    "entry",
    [
        {"kind": "env", "id": "20261101T000000Z", "files": {"manifest.json": [1, None],
                                                            "../x": [1, None]}},
        {"kind": "env", "id": "../../etc", "files": {"manifest.json": [1, None]}},
        {"kind": "secrets", "id": "20261101T000000Z", "files": {"manifest.json": [1, None]}},
        {"kind": "env", "id": "20261101T000000Z", "files": {"manifest.json": [-1, None]}},
        {"kind": "env", "id": "20261101T000000Z", "files": {"manifest.json": [1, "zz"]}},
        {"kind": "env", "id": "20261101T000000Z", "files": {"f": [1, None]}},  # no manifest
    ],
)  # fmt: skip
def test_index_from_the_vault_is_validated(entry):
    with pytest.raises((ValueError, TypeError)):
        parse(json.dumps({"format": 1, "host": "web1", "backups": [entry]}).encode())


def test_index_of_another_host_is_refused():
    with pytest.raises(ValueError):
        parse(offsite.index_of("web2", []))


def row(kind: str, backup_id: str, result: str) -> offsite.Row:
    return offsite.Row("web1", kind, backup_id, "skip", result, True)


def test_table_sums_up_what_is_already_there():
    rows = [row("env", f"2026110{i}T000000Z", "present") for i in range(1, 6)]
    rows += [row("env", "20261106T000000Z", "sent+verified"), row("units", "u1", "present")]
    shown = offsite.summarised(rows)
    assert [(r.kind, r.id, r.result) for r in shown] == [
        ("env", "5 backups", "present"),
        ("env", "20261106T000000Z", "sent+verified"),
        ("units", "u1", "present"),
    ]


def test_one_hosts_surprise_during_replicate_is_its_row_and_the_others_finish(monkeypatch):
    """A parser's KeyError on one host used to end the whole replicate with a traceback."""
    from contextlib import contextmanager

    from fabfile.core.model import BackupSettings, Host

    backup = BackupSettings(offsite_host="vault")
    hosts = [Host(name=n, backup=backup) for n in ("odd", "good")]
    vault_host = Host(name="vault")

    @contextmanager
    def opened(_host):
        yield object()

    def replicate(host, _vault, **_kw):
        if host.name == "odd":
            raise KeyError("sha256")
        return [offsite.Row(host.name, "env", "1", "skip", "present", "")]

    monkeypatch.setattr(offsite_sftp.SftpBackend, "open", staticmethod(opened))
    monkeypatch.setattr(offsite, "replicate", replicate)
    ok = lambda host, _rows: offsite.Outcome(host.name, True, "", 0.0)  # noqa: E731
    monkeypatch.setattr(offsite, "_outcome", ok)
    find = {"vault": vault_host, "odd": hosts[0], "good": hosts[1]}.__getitem__
    odd, good = offsite.replicate_hosts(hosts, find)
    assert (odd.ok, odd.exit_code) == (False, 1) and "unexpected KeyError" in odd.detail
    assert good.ok
