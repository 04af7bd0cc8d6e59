"""backup.replicate --transfers: backups sent side by side (figure 8), on both back ends (a
real SFTP-only sshd and a real `rclone serve s3`).

A first copy lists the vault once, not once per backup; several uploads are in flight at
once, each SFTP worker on its own session; and at every instant no backup complete on the
vault refers to one that is not (sampled from the servers' own directories meanwhile).
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from fabfile.core import offsite_s3, offsite_sftp
from fabfile.core.manifest import KINDS, MANIFEST_NAME, Manifest
from fabfile.core.store import Store
from tests.sshd.test_offsite_backends import (  # noqa: F401 (fixtures)
    Site,
    opened,
    replicate,
    s3,
    s3_env,
    s3_link,
    s3_site,
    site,
    status,
)
from tests.sshd.test_replicate import DAY, backup, host, vault  # noqa: F401 (fixtures)

pytestmark = pytest.mark.sshd

TRANSFERS = 8


def history(where: Site, days: int = 4) -> list[str]:
    """env and units on `days` days, unchanged: day one holds the bytes, the rest refer to it;
    the env changes on day 3, so there are two holders of env."""
    for day in range(days):
        if day == 3:
            env = Path(where.host.layout.env_file)
            env.write_text(env.read_text() + "ZACHOT_EXTRA=3\n")
        backup(where.host, ["env", "units"], at=DAY + timedelta(days=day))
    refs = Store(where.host.store.path).list(where.host.name)
    assert sum(bool(ref.references()) for ref in refs) >= days  # a history with references
    return [ref.id for ref in refs]


def backend_class(where: Site) -> type:
    return offsite_sftp.SftpBackend if where.kind == "sftp" else offsite_s3.S3Backend


def counted(monkeypatch, cls: type, name: str) -> Counter:
    """Count the calls of cls.name (every worker's view is of that class)."""
    calls: Counter = Counter()
    real = getattr(cls, name)

    @functools.wraps(real)
    def wrapper(self, *args, **kwargs):
        calls[name] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)
    return calls


def test_a_first_copy_lists_the_vault_once_not_once_per_backup(site, monkeypatch):  # noqa: F811
    ids = history(site)
    cls = backend_class(site)
    listed = counted(monkeypatch, cls, "list_dirs")
    probes = counted(monkeypatch, cls, "probe")
    rows = replicate(site, transfers=TRANSFERS)
    assert len(rows) == len(ids) and all(r.result == "sent+verified" for r in rows), rows
    # The index was missing, so it was rebuilt from one listing per kind: that listing says
    # what is there, so no backup is probed on its own.
    assert (listed["list_dirs"], probes["probe"]) == (len(KINDS), 0)


def test_several_uploads_in_flight_each_sftp_worker_on_its_own_session(site, monkeypatch):  # noqa: F811
    history(site)
    in_flight: set[int] = set()
    sessions: set[int] = set()
    most, shared = [0], []
    lock = threading.Lock()
    cls = backend_class(site)
    real = cls.upload

    def upload(self, item, directory, label):
        session = id(getattr(self, "sftp", self))  # S3: one client for all, by design
        with lock:
            if site.kind == "sftp" and session in in_flight:
                shared.append(label)  # two threads on one SFTPClient mix up its replies
            in_flight.add(session if site.kind == "sftp" else id(item))
            sessions.add(session)
            most[0] = max(most[0], len(in_flight))
        try:
            return real(self, item, directory, label)
        finally:
            with lock:
                in_flight.discard(session if site.kind == "sftp" else id(item))

    monkeypatch.setattr(cls, "upload", upload)
    rows = replicate(site, transfers=TRANSFERS)
    assert rows and all(r.ok for r in rows), rows
    assert most[0] >= 3, most  # one at a time before
    assert shared == []
    if site.kind == "sftp":
        assert len(sessions) >= 3  # a session per worker, on the one SSH connection
    assert all(state.ok for state in status(site))


def dangling(where: Site, read: list[str] | None = None) -> list[str]:
    """What the vault shows right now that breaks the rule: a complete backup (its manifest
    there) that refers to an incomplete one, or an index that lists an incomplete one
    (`read` gets the backups whose manifest could be read)."""
    base = where.stored()
    problems = []
    read = [] if read is None else read
    for manifest in base.glob(f"*/*/{MANIFEST_NAME}"):
        kind, backup_id = manifest.parent.parent.name, manifest.parent.name
        try:
            text = opened(where, manifest).decode()
            held = {r.stored_in for r in Manifest.from_json(text, where=str(manifest)).files}
        except Exception:  # being replaced right now: the next sample reads it
            continue
        read.append(backup_id)
        for holder in held - {None}:
            if not (base / kind / holder / MANIFEST_NAME).exists():
                problems.append(f"{kind}/{backup_id} refers to {holder}, not complete")
    index = base / "index.json"
    with contextlib.suppress(OSError, ValueError):
        for entry in json.loads(opened(where, index))["backups"]:
            if not (base / entry["kind"] / entry["id"] / MANIFEST_NAME).exists():
                problems.append(f"the index lists {entry['kind']}/{entry['id']}, incomplete")
    return problems


@pytest.mark.fault(
    "parallel replicate",
    checked="vault sampled during a parallel first copy: no complete backup refers to an "
    "incomplete one, the index lists none",
)
def test_no_complete_backup_ever_refers_to_an_incomplete_one(site):  # noqa: F811
    ids = history(site)
    seen: list[str] = []
    samples = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.extend(dangling(site))
            samples[0] += 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rows = replicate(site, transfers=TRANSFERS)
    finally:
        stop.set()
        sampler.join(timeout=30)
    assert [r.result for r in rows] == ["sent+verified"] * len(ids), rows
    assert samples[0] >= 5 and seen == [], (samples, seen[:5])
    read: list[str] = []
    assert dangling(site, read) == [] and sorted(read) == sorted(ids)  # every one was checked


@pytest.mark.fault(
    "s3 endpoint dies",
    checked="TCP link cut mid-PUT with 8 transfers: one FAILED row says why, the rest are "
    "not tried, nothing refers to an incomplete backup, a retry completes",
)
def test_a_cut_link_with_parallel_transfers_is_one_clear_message(s3_link):  # noqa: F811
    site, link = s3_link  # noqa: F811
    ids = history(site)
    link.cut_at(b"PUT ", nth=4, after=300)
    rows = replicate(site, transfers=TRANSFERS)
    failed = [r for r in rows if r.result == "FAILED"]
    assert len(failed) == 1 and "cannot reach" in failed[0].detail, rows
    assert "\n" not in failed[0].detail
    assert all(r.result in ("sent+verified", "FAILED", "not tried") for r in rows)
    assert all("lost the connection" in r.detail for r in rows if r.result == "not tried")
    assert dangling(site) == []
    link.up()
    again = replicate(site, transfers=TRANSFERS)
    assert len(again) == len(ids) and all(r.ok for r in again), again
    assert all(state.ok for state in status(site))
