"""What goes off-site: no plaintext hash or key names of an encrypted env file, and nothing
plain unless the inventory opts a kind out (backup.offsite_plain)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fabfile.core import offsite
from fabfile.core.manifest import FileRecord, Manifest
from fabfile.core.model import BackupSettings, Host
from fabfile.core.store import BackupRef

pytestmark = pytest.mark.unit

PLAIN_SHA, CIPHER_SHA = "a" * 64, "b" * 64


def manifest(kind: str, *, encrypted: bool) -> Manifest:
    record = FileRecord("f", PLAIN_SHA, 10, "/x", 0o600, "root", "root", 0.0)
    record = replace(record, ciphertext_sha256=CIPHER_SHA) if encrypted else record
    meta = {"keys": ["API_SECRET_KEY"], "missing_required": ["SENTRY_DSN"], "deployed": {}}
    return Manifest(1, "20261124T151500Z", "web1", kind, "2026-11-24T15:15:00Z", (record,), meta)


def test_offsite_manifest_keeps_only_what_checks_the_ciphertext():
    text = manifest("env", encrypted=True).offsite().to_json()
    assert PLAIN_SHA not in text and "API_SECRET_KEY" not in text and "SENTRY_DSN" not in text
    [record] = Manifest.from_json(text, where="vault").files
    assert record.sha256 == record.ciphertext_sha256 == CIPHER_SHA
    assert manifest("units", encrypted=False).offsite().files[0].sha256 == PLAIN_SHA


@pytest.mark.parametrize(
    ("kind", "encrypted", "opt_out", "refused"),
    [
        ("units", True, (), False),
        ("units", False, (), True),
        ("logs", False, (), True),
        ("logs", False, ("logs",), False),
        ("units", False, ("logs",), True),
        ("env", False, ("units", "logs"), True),
    ],
)
def test_plain_backups_stay_local_unless_their_kind_opts_out(kind, encrypted, opt_out, refused):
    host = Host("web1", backup=BackupSettings(offsite_plain=opt_out))
    ref = BackupRef(
        "web1", kind, "20261124T151500Z", Path("/nowhere"), manifest(kind, encrypted=encrypted)
    )
    why = offsite.unencrypted(ref, host)
    assert (why is not None) == refused
    if refused:
        assert ("backup.offsite_plain" in why) == (kind != "env")
