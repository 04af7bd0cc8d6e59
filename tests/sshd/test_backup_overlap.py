"""Exchanges that run beside each other (one wait on a far link, not one after another):
backup.all's units read beside the env step, whose result and errors still belong to the
units step; backup.logs' tar beside its listing, waiting for the names the listing gives."""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import paramiko
import pytest

from fabfile.core import facts
from fabfile.core.backups import env as env_backup
from fabfile.core.backups import logs as logs_backup
from fabfile.core.backups.planner import BackupFailed, back_up, context_for
from fabfile.core.errors import FactError
from fabfile.core.model import Host, StoreSettings
from fabfile.core.store import Store
from fabfile.core.transport import Transport
from tests.sshd.helpers import make_server

pytestmark = pytest.mark.sshd


@pytest.fixture
def host(sshd, tmp_path) -> Host:
    layout = make_server(tmp_path / "server")
    return replace(sshd.host, layout=layout, store=StoreSettings(path=tmp_path / "store"))


@pytest.fixture
def events(monkeypatch) -> list[str]:
    said: list[str] = []
    pull_small_files, env_run = Transport.pull_small_files, env_backup.run

    def pack(self, *args, **kwargs):
        said.append("units read starts")
        return pull_small_files(self, *args, **kwargs)

    def env_step(ctx):
        said.append("env step starts")
        try:
            return env_run(ctx)
        finally:
            said.append("env step ends")

    monkeypatch.setattr(Transport, "pull_small_files", pack)
    monkeypatch.setattr(env_backup, "run", env_step)
    return said


def test_units_are_read_during_the_env_step(host, events):
    back_up(context_for(host, datetime.now(UTC)), ["env", "units"])
    assert events.index("units read starts") < events.index("env step ends")
    ref = Store(host.store.path).latest("local", "units")
    assert ref.manifest.meta["drift"]["zachot-api.service"] == "differs"
    assert Store(host.store.path).latest("local", "env") is not None


def test_a_failed_units_read_fails_the_units_step_only(host, events):
    unit = Path(host.layout.unit_dir) / host.layout.units[0]
    os.unlink(unit)
    with pytest.raises(BackupFailed) as failed:
        back_up(context_for(host, datetime.now(UTC)), ["env", "units"])
    assert failed.value.message.startswith("units:")
    assert Store(host.store.path).latest("local", "env") is not None
    assert Store(host.store.path).latest("local", "units") is None


def _logs(host: Host) -> str:
    return back_up(context_for(host, datetime.now(UTC)), ["logs"])


def test_logs_tar_starts_before_the_listing_returns(host, monkeypatch):
    # The listing waits (up to 10 s) for tar's exchange to begin: it does at once when tar
    # runs beside it; a tar started after the listing would find it given up.
    started = threading.Event()
    said: list[str] = []
    stream_to, gather = Transport.stream_to, facts.gather

    def stream(self, *args, **kwargs):
        started.set()
        return stream_to(self, *args, **kwargs)

    def listing(transport, fact):
        said.append("tar had started" if started.wait(10) else "tar had not started")
        return gather(transport, fact)

    monkeypatch.setattr(Transport, "stream_to", stream)
    monkeypatch.setattr(logs_backup.facts, "gather", listing)
    _logs(host)
    assert said == ["tar had started"]
    ref = Store(host.store.path).latest("local", "logs")
    # The box chose the compressor; the archive is named by its first bytes.
    assert ref.manifest.meta["archive"] == (
        "logs.tar.zst" if shutil.which("zstd") else "logs.tar.gz"
    )
    assert sorted(e["path"] for e in ref.manifest.meta["index"]) == ["api.log", "api.log.1"]


def test_logs_with_nothing_new_keep_no_archive(host):
    _logs(host)
    assert "0 files (0 bytes raw), 2 already held" in _logs(host)
    ref = Store(host.store.path).latest("local", "logs")
    assert "archive" not in ref.manifest.meta
    assert sorted(p.name for p in ref.path.iterdir()) == ["manifest.json"]


def test_a_failed_logs_listing_ends_tar_and_keeps_nothing(host, monkeypatch):
    def refused(transport, fact):
        raise FactError(f"{host.name}: `find` exited 1: Permission denied")

    monkeypatch.setattr(logs_backup.facts, "gather", refused)
    before = set(threading.enumerate())
    with pytest.raises(BackupFailed, match=r"logs: .*Permission denied"):
        _logs(host)
    # tar was given no names and ended; its thread is gone (paramiko's own may still be
    # closing the connection) and nothing was staged.
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not [t for t in left if not isinstance(t, paramiko.Transport)]
    assert Store(host.store.path).latest("local", "logs") is None
    assert not [p for p in Path(host.store.path).rglob("*") if p.is_file()]
