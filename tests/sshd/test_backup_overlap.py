"""backup.all's units read runs beside the env step's exchanges (one wait on a far link, not
one more after them), and its result and errors still belong to the units step."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabfile.core.backups import env as env_backup
from fabfile.core.backups.planner import BackupFailed, back_up, context_for
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
