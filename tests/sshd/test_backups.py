"""Backups end to end against a real sshd, with the zachot layout in a temp dir."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabfile.core.backups.planner import BackupFailed, back_up, context_for
from fabfile.core.model import Host, StoreSettings
from fabfile.core.store import Store
from tests.sshd.helpers import CANARY, ROOT, make_server, write_inventory

pytestmark = pytest.mark.sshd


@pytest.fixture
def host(sshd, tmp_path) -> Host:
    layout = make_server(tmp_path / "server")
    return replace(sshd.host, layout=layout, store=StoreSettings(path=tmp_path / "store"))


def backup(host: Host, kinds: list[str], *, at: datetime | None = None, full=False) -> str:
    return back_up(context_for(host, at or datetime.now(UTC)), kinds, full=full)


def test_env_round_trips_and_never_records_values(host):
    backup(host, ["env"])
    store = Store(host.store.path)
    ref = store.latest("local", "env")
    stored = store.file_path(ref, "zachot.env")
    assert stored.read_bytes() == Path(host.layout.env_file).read_bytes()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    record = ref.manifest.file("zachot.env")
    assert (record.mode, record.owner) == (0o600, "root")
    assert ref.manifest.meta["keys"] == ["REDIS_URL", "WORKER_CONCURRENCY", "API_KEY"]
    assert ref.manifest.meta["deployed"]["describe"] == "v1.0.0"
    assert CANARY not in (ref.path / "manifest.json").read_text()
    [server_copy] = Path(host.layout.backup_dir).iterdir()
    assert server_copy.name.startswith("zachot.env.")
    assert stat.S_IMODE(server_copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(server_copy.parent.stat().st_mode) == 0o700


def test_unchanged_env_is_not_duplicated(host):
    first = datetime(2026, 11, 1, tzinfo=UTC)
    backup(host, ["env"], at=first)
    detail = backup(host, ["env"], at=first + timedelta(days=7))
    store = Store(host.store.path)
    older, newer = store.list("local", "env")
    assert "unchanged, content held by " + older.id in detail
    assert newer.manifest.file("zachot.env").stored_in == older.id
    assert not (newer.path / "zachot.env").exists()
    assert len(list(Path(host.layout.backup_dir).iterdir())) == 1


def test_units_with_drop_ins_and_drift(host):
    backup(host, ["units"])
    ref = Store(host.store.path).latest("local", "units")
    names = [f.name for f in ref.manifest.files]
    assert names == [
        "zachot-api.service",
        "zachot-api.service.d+override.conf",
        "zachot-worker.service",
    ]
    assert ref.manifest.meta["drift"] == {
        "zachot-api.service": "differs",
        "zachot-worker.service": "missing in repo",
    }


def archive_members(store: Store, ref) -> dict[str, bytes]:
    archive = store.file_path(ref, ref.manifest.meta["archive"])
    out = subprocess.run(["tar", "-xOf", str(archive)], capture_output=True, check=True)
    listing = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True)
    return {"names": listing.stdout.split(), "bytes": out.stdout}


def test_logs_incremental_sends_only_new_files_and_skips_symlinks(host):
    store = Store(host.store.path)
    day = datetime(2026, 11, 1, tzinfo=UTC)
    backup(host, ["logs"], at=day)
    first = store.latest("local", "logs")
    members = archive_members(store, first)
    assert sorted(members["names"]) == ["api.log", "api.log.1"]
    assert b"SHOULD-NOT-BE-ARCHIVED" not in members["bytes"]
    logs = Path(host.layout.logs_dir)
    (logs / "api.log.1").rename(logs / "api.log.2")  # logrotate's shuffle
    (logs / "api.log").rename(logs / "api.log.1")
    (logs / "api.log").write_text("new day\n")
    detail = backup(host, ["logs"], at=day + timedelta(days=1))
    second = store.latest("local", "logs")
    assert archive_members(store, second)["names"] == ["api.log"]
    assert "sent 1 files" in detail and "2 already held" in detail
    index = {e["path"]: e["archive"] for e in second.manifest.meta["index"]}
    assert index == {"api.log": second.id, "api.log.1": first.id, "api.log.2": first.id}


def test_missing_env_file_fails_and_leaves_store_as_it_was(host):
    os.unlink(host.layout.env_file)
    with pytest.raises(BackupFailed, match="no such file"):
        backup(host, ["env", "units"])
    store = Store(host.store.path)
    assert store.latest("local", "env") is None
    assert store.latest("local", "units") is not None  # the other kind still ran
    assert not [p for p in (host.store.path / "local" / "env").iterdir()]


def test_cli_backup_all_then_list_never_shows_the_secret(host, tmp_path):
    env = {**os.environ, "ZACHOT_INVENTORY": str(write_inventory(host, tmp_path / "inv.yml"))}
    fab = Path(sys.executable).parent / "fab"
    run = subprocess.run(
        [fab, "-H", "local", "backup.all", "--logs"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    listing = subprocess.run(
        [fab, "backup.list", "--json"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    kinds = sorted(row["kind"] for row in json.loads(listing.stdout))
    assert kinds == ["env", "logs", "units"]
    for text in (run.stdout, run.stderr, listing.stdout, listing.stderr):
        assert CANARY not in text
