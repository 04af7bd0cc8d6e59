"""backup.logs against a real sshd while the logs are written and rotated under tar.

Before the fix, both failed: `tar exited 1 (tar: api.log: file changed as we read it)` for a
log being written, and tar's exit 2 for a file rotated away between the listing and the read.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabfile.core.backups.planner import back_up, context_for
from fabfile.core.model import Host, StoreSettings
from fabfile.core.store import BackupRef, Store
from tests.sshd.helpers import make_server

pytestmark = pytest.mark.sshd


@pytest.fixture
def host(sshd, tmp_path) -> Host:
    layout = make_server(tmp_path / "server")
    return replace(sshd.host, layout=layout, store=StoreSettings(path=tmp_path / "store"))


def backup(host: Host) -> str:
    return back_up(context_for(host, datetime.now(UTC)), ["logs"], full=True)


def text(size: int) -> bytes:
    """Log-like bytes that do not compress to nothing (so tar takes a while)."""
    return base64.encodebytes(os.urandom(size * 3 // 4))[:size]


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """A service appending lines to path, as fast as it can, until the block ends."""
    stop = threading.Event()

    def run() -> None:
        with path.open("ab", buffering=0) as log:
            n = 0
            while not stop.is_set():
                log.write(b"line %d\n" % n)
                n += 1
                time.sleep(0.0005)

    writer = threading.Thread(target=run, daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


def members(store: Store, ref: BackupRef) -> dict[str, int]:
    archive = store.file_path(ref, ref.manifest.meta["archive"])
    listing = subprocess.run(
        ["tar", "-tvf", str(archive), "--numeric-owner"], capture_output=True, text=True, check=True
    )
    return {line.split()[-1]: int(line.split()[2]) for line in listing.stdout.splitlines()}


def indexed(ref: BackupRef) -> dict[str, int]:
    return {e["path"]: e["size"] for e in ref.manifest.meta["index"]}


def test_a_log_being_written_is_backed_up_every_time(host):
    store = Store(host.store.path)
    api = Path(host.layout.logs_dir) / "api.log"
    api.write_bytes(text(40_000_000))
    with writing(api):
        for _ in range(3):
            detail = backup(host)
            ref = store.latest("local", "logs")
            assert members(store, ref) == indexed(ref)  # sizes as tar stored them
            assert ref.manifest.meta["grew"] == ["api.log"], detail
            assert "1 changed while read, kept as tar saw them" in detail
    assert indexed(ref)["api.log"] < api.stat().st_size  # cut where tar stat'ed it


def test_a_rotation_during_the_walk_is_recorded(host):
    store = Store(host.store.path)
    logs = Path(host.layout.logs_dir)
    (logs / "aaa-bulk.dat").write_bytes(text(150_000_000))  # read first: tar is busy on it
    (logs / "api.log.14.gz").write_bytes(b"oldest")
    done: list[str] = []
    walker = threading.Thread(target=lambda: done.append(backup(host)))
    walker.start()
    _wait_for_stream(host.store.path)
    # logrotate's rename style, while tar reads the bulk file: the 14th copy is deleted,
    # api.log becomes api.log.1 and a new api.log starts.
    (logs / "api.log.14.gz").unlink()
    (logs / "api.log").rename(logs / "api.log.1")
    (logs / "api.log").write_bytes(b"after the rotation\n")
    walker.join(timeout=300)
    assert done, "backup.logs failed (see the thread's exception above)"
    ref = store.latest("local", "logs")
    assert members(store, ref) == indexed(ref)
    assert indexed(ref)["api.log"] == len(b"after the rotation\n")
    assert indexed(ref)["api.log.1"] == len(b"started\n" * 1000)  # what the name held then
    assert ref.manifest.meta["skipped"] == [
        {"path": "api.log.14.gz", "reason": "rotated away before tar read them"}
    ]
    assert "skipped 1 rotated away before tar read them: api.log.14.gz" in done[0]


def _wait_for_stream(store: Path, timeout: float = 60) -> None:
    """Until the archive's first bytes land: tar has listed and started reading."""
    end = time.monotonic() + timeout
    while not any(p.stat().st_size for p in store.rglob(".staging-*/logs.tar*")):
        assert time.monotonic() < end, "the logs stream never started"
        time.sleep(0.005)
