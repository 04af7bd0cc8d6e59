"""The sandbox history generator (sandbox/history.py) against real sshds: a history cloned
from real backups is a store the project's own code accepts, and its off-site copy is
exactly what backup.replicate would have left on an SFTP-only vault."""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from fabfile.core.model import StoreSettings
from fabfile.core.store import Store
from sandbox.history import tar_stream, write_history
from tests.sshd.test_replicate import backup, host, replicate, status, vault  # noqa: F401

pytestmark = pytest.mark.sshd

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
DAYS = 120


def test_history_is_accepted_by_store_replicate_and_verify(host, vault, tmp_path):  # noqa: F811
    # Templates: one real (encrypted) backup of each kind the loopback server has.
    scratch = tmp_path / "templates"
    backup(replace(host, store=StoreSettings(path=scratch)), ["env", "units", "logs"], at=NOW)
    templates = {k: Store(scratch).latest(host.name, k) for k in ("env", "units", "logs")}

    store = Store(host.store.path)
    made, members = write_history(host, store, templates, DAYS, NOW, host.backup.offsite_dir)
    assert made.written == {"env": DAYS, "units": DAYS, "logs": 18}
    assert made.offsite == made.written and not made.skipped_offsite
    assert store.problems() == []
    refs = store.list(host.name)
    assert Counter(r.kind for r in refs) == Counter(made.written)
    assert any(r.references() for r in refs)  # unchanged files are references, as in life

    # The off-site copy, unpacked where the vault's SFTP sessions start.
    with tarfile.open(fileobj=io.BytesIO(tar_stream(members, host.backup.offsite_dir))) as tar:
        tar.extractall(vault[1], filter="data")
    rows = replicate(host, vault, dry_run=True)
    assert {r.result for r in rows} == {"present"}, [r for r in rows if r.result != "present"]
    states = status(host, vault, deep=True)
    assert len(states) == len(refs) and all(s.ok for s in states), [s for s in states if not s.ok]
    assert {s.remote for s in states} == {"complete"}
