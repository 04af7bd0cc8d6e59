"""A full local disk: one clear error, nothing half-written, the lock released."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fabfile.core.model import StoreSettings
from fabfile.core.store import Store
from tests.sshd.helpers import ROOT, make_server, write_inventory

pytestmark = pytest.mark.sshd

FAB = Path(sys.executable).parent / "fab"


@pytest.fixture
def tiny_store(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(store)], check=True)
    yield store
    subprocess.run(["umount", str(store)], check=True)


def test_backup_onto_a_full_store_fails_cleanly(sshd, tmp_path, tiny_store):
    layout = make_server(tmp_path / "server")
    (Path(layout.logs_dir) / "big.log").write_bytes(os.urandom(1024 * 1024))
    host = replace(sshd.host, layout=layout, store=StoreSettings(path=tiny_store, lock_timeout=0))
    env = {**os.environ, "ZACHOT_INVENTORY": str(write_inventory(host, tmp_path / "inv.yml"))}

    def backup(*args: str) -> subprocess.CompletedProcess:
        argv = [str(FAB), "-H", "local", "backup.all", *args]
        return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)

    run = backup("--logs")
    assert run.returncode == 1
    assert "No space left on device" in run.stderr and "Traceback" not in run.stderr
    assert "on this machine" in run.stderr and "connection lost" not in run.stderr
    store = Store(tiny_store)
    assert store.latest("local", "logs") is None
    leftovers = [p for p in tiny_store.rglob("*") if ".staging-" in p.name or ".part-" in p.name]
    assert leftovers == []
    assert not (tiny_store / ".lock").exists()
    again = backup()  # env and units fit: the lock was released and the store is usable
    assert again.returncode == 0, again.stderr
    assert store.latest("local", "env") is not None
