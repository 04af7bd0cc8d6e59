"""The store lock: atomic create, holder message, waiting, stale detection, exclusion."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabfile.core.errors import ExitCode, LockHeldError, StoreError
from fabfile.core.lock import LockHolder, StoreLock, is_stale, machine_id, pid_alive
from fabfile.core.store import Store

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 15, 0, 0, tzinfo=UTC)


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / ".lock"


def make_lock(path: Path, timeout: float = 0, **kwargs) -> StoreLock:
    kwargs.setdefault("poll_interval", 0.02)
    return StoreLock(path, timeout=timeout, purpose=kwargs.pop("purpose", "test"), **kwargs)


def dead_pid() -> int:
    # subprocess.run reaps the child, so its pid is free (not a zombie) afterwards.
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def plant(path: Path, *, host: str, pid: int, age: timedelta = timedelta(0), **extra) -> str:
    """A lock file as another process would have left it, `age` old by both clocks."""
    since = datetime.now(UTC) - age
    data = {"host": host, "pid": pid, "since": since.strftime("%Y-%m-%dT%H:%M:%SZ")}
    data |= {"purpose": "backup.all"} | extra
    text = json.dumps(data)
    path.write_text(text)
    os.utime(path, (since.timestamp(), since.timestamp()))
    return text


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


# -- basics ---------------------------------------------------------------------


def test_acquire_writes_holder_and_release_removes_it(lock_path: Path) -> None:
    with make_lock(lock_path, purpose="backup.all") as lock:
        assert lock.held
        holder = json.loads(lock_path.read_text())
        assert holder["host"] == socket.gethostname()
        assert holder["pid"] == os.getpid()
        assert holder["purpose"] == "backup.all"
        assert datetime.fromisoformat(holder["since"]).tzinfo is not None
        assert stat.S_IMODE(lock_path.stat().st_mode) == 0o600
        assert leftovers(lock_path) == []  # the temp file is gone
    assert not lock_path.exists()
    assert not lock.held


def test_lock_is_private_even_with_umask_0(lock_path: Path) -> None:
    old = os.umask(0)
    try:
        with make_lock(lock_path):
            assert stat.S_IMODE(lock_path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_store_lock_creates_root_private(tmp_path: Path) -> None:
    store = Store(tmp_path / "new" / "store")
    with store.lock(timeout=0, purpose="backup.all"):
        assert (store.root / ".lock").is_file()
        assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert store.problems() == []


def test_second_acquire_fails_at_once_naming_the_holder(lock_path: Path) -> None:
    with make_lock(lock_path, purpose="backup.all"):
        started = time.monotonic()
        with pytest.raises(LockHeldError) as caught:
            make_lock(lock_path, timeout=0).acquire()
        assert time.monotonic() - started < 5
    message = caught.value.message
    assert message.startswith(f"store is locked by {socket.gethostname()} pid {os.getpid()} since")
    assert "(backup.all)" in message
    assert f"remove {lock_path}" in message
    assert caught.value.exit_code == ExitCode.LOCKED


def test_not_reentrant(lock_path: Path) -> None:
    with make_lock(lock_path) as lock, pytest.raises(StoreError, match="not reentrant"):
        lock.acquire()


def test_waits_then_succeeds_when_released(lock_path: Path) -> None:
    first = make_lock(lock_path)
    first.acquire()
    timer = threading.Timer(0.5, first.release)
    timer.start()
    try:
        started = time.monotonic()
        with make_lock(lock_path, timeout=30):
            waited = time.monotonic() - started
    finally:
        timer.cancel()
    assert 0.3 < waited < 25


def test_gives_up_after_timeout(lock_path: Path) -> None:
    with make_lock(lock_path):
        started = time.monotonic()
        with pytest.raises(LockHeldError):
            make_lock(lock_path, timeout=0.3).acquire()
        assert 0.25 < time.monotonic() - started < 10


def test_release_leaves_a_lock_that_is_no_longer_ours(lock_path: Path) -> None:
    lock = make_lock(lock_path)
    lock.acquire()
    other = plant(lock_path, host="ops-laptop", pid=4242)
    lock.release()
    assert lock_path.read_text() == other


# -- stale locks ------------------------------------------------------------------


def test_lock_of_a_dead_process_on_this_host_is_broken(lock_path: Path) -> None:
    pid = dead_pid()
    assert not pid_alive(pid)
    plant(lock_path, host=socket.gethostname(), pid=pid, machine=machine_id())
    with make_lock(lock_path, timeout=0):
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
        assert leftovers(lock_path) == []  # the renamed-aside stale file is gone too


def test_lock_of_a_live_process_on_this_host_is_kept_however_old(lock_path: Path) -> None:
    plant(
        lock_path, host=socket.gethostname(), pid=os.getpid(), age=timedelta(days=3),
        machine=machine_id(),
    )  # fmt: skip
    with pytest.raises(LockHeldError, match=f"pid {os.getpid()}"):
        make_lock(lock_path).acquire()


def test_lock_from_another_host_is_kept_until_stale_after(lock_path: Path) -> None:
    plant(lock_path, host="ops-laptop", pid=4242, age=timedelta(hours=5))
    with pytest.raises(LockHeldError, match="ops-laptop pid 4242"):
        make_lock(lock_path).acquire()

    plant(lock_path, host="ops-laptop", pid=4242, age=timedelta(hours=7))
    with make_lock(lock_path):
        assert json.loads(lock_path.read_text())["host"] == socket.gethostname()


def test_stale_after_is_configurable(lock_path: Path) -> None:
    plant(lock_path, host="ops-laptop", pid=4242, age=timedelta(minutes=10))
    with make_lock(lock_path, stale_after=timedelta(minutes=5)):
        pass


@pytest.mark.parametrize("content", ["", "{not json", '{"host": "x", "pid": 0}', "[]"])
def test_unreadable_lock_is_waited_for_while_young_and_broken_when_old(
    lock_path: Path, content: str
) -> None:
    lock_path.write_text(content)
    with pytest.raises(LockHeldError, match="unreadable lock file"):
        make_lock(lock_path).acquire()
    old = time.time() - 7 * 3600
    os.utime(lock_path, (old, old))
    with make_lock(lock_path):
        pass


def test_breaker_puts_back_a_lock_that_changed_under_it(lock_path: Path) -> None:
    # We judged content A stale, but by the time we rename, B (live) is there.
    live = plant(lock_path, host="ops-laptop", pid=4242)
    make_lock(lock_path)._break(seen_text="what we judged stale")
    assert lock_path.read_text() == live
    assert leftovers(lock_path) == []


def test_hostile_holder_fields_are_printed_inert(lock_path: Path) -> None:
    plant(lock_path, host="evil\x1b[31m\nhost", pid=4242, purpose="x" * 500)
    with pytest.raises(LockHeldError) as caught:
        make_lock(lock_path).acquire()
    message = caught.value.message
    assert "\x1b" not in message and "\n" not in message
    assert len(message) < 400


def test_a_directory_in_place_of_the_lock_is_an_error(lock_path: Path) -> None:
    lock_path.mkdir()
    with pytest.raises(StoreError):
        make_lock(lock_path).acquire()


def test_works_where_hard_links_are_refused(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    with make_lock(lock_path):
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
        with pytest.raises(LockHeldError):
            make_lock(lock_path).acquire()
        assert leftovers(lock_path) == []
    assert not lock_path.exists()


# -- the pure decision --------------------------------------------------------------


def holder(
    machine: str = "ops-laptop-id", since: datetime = NOW, host: str = "laptop"
) -> LockHolder:
    return LockHolder(host, 4242, since.strftime("%Y-%m-%dT%H:%M:%SZ"), "backup.all", "", machine)


def alive(pid: int) -> bool:
    return True


def dead(pid: int) -> bool:
    return False


def test_is_stale_same_machine_goes_by_pid_only() -> None:
    old = NOW - timedelta(days=9)
    assert not is_stale(holder("here", old), now=NOW, this_machine="here", pid_alive=alive)
    assert is_stale(holder("here", NOW), now=NOW, this_machine="here", pid_alive=dead)


def test_is_stale_two_laptops_with_one_hostname_never_judge_each_others_pids() -> None:
    # Both are called "laptop"; the other one's pid means nothing here.
    theirs = holder("their-machine-id", NOW, host="laptop")
    assert not is_stale(theirs, now=NOW, this_machine="our-machine-id", pid_alive=dead)
    # A record without a machine id (older format) is judged by age, never by pid.
    legacy = holder("", NOW, host="laptop")
    assert not is_stale(legacy, now=NOW, this_machine="", pid_alive=dead)


def test_is_stale_other_machine_goes_by_the_newer_of_since_and_mtime() -> None:
    def stale(since: datetime, modified: datetime | None = None) -> bool:
        return is_stale(
            holder("there", since),
            now=NOW,
            this_machine="here",
            pid_alive=dead,  # never consulted for another machine
            stale_after=timedelta(hours=6),
            modified=modified,
        )

    assert not stale(NOW - timedelta(hours=5))
    assert stale(NOW - timedelta(hours=7))
    # A skewed clock on either side must not break a live lock on its own.
    assert not stale(NOW - timedelta(hours=7), modified=NOW - timedelta(minutes=1))
    assert not stale(NOW - timedelta(minutes=1), modified=NOW - timedelta(hours=7))
    assert stale(NOW - timedelta(hours=8), modified=NOW - timedelta(hours=7))


def test_is_stale_unreadable_goes_by_mtime() -> None:
    kwargs = {"now": NOW, "this_machine": "here", "pid_alive": alive}
    assert not is_stale(None, modified=NOW - timedelta(hours=1), **kwargs)
    assert is_stale(None, modified=NOW - timedelta(hours=7), **kwargs)
    assert not is_stale(None, **kwargs)


def test_machine_id_without_systemd_is_made_once_and_kept(tmp_path, monkeypatch) -> None:
    from fabfile.core import lock

    monkeypatch.setattr(lock, "MACHINE_ID_FILES", (tmp_path / "absent",))
    monkeypatch.setattr(lock, "OWN_MACHINE_ID", tmp_path / "cfg" / "machine-id")
    lock.machine_id.cache_clear()
    try:
        first = lock.machine_id()
        lock.machine_id.cache_clear()
        assert lock.machine_id() == first and len(first) == 32
        assert stat.S_IMODE((tmp_path / "cfg" / "machine-id").stat().st_mode) == 0o600
    finally:
        lock.machine_id.cache_clear()


@pytest.mark.parametrize("pid", [0, -1, True, "42", 2**40, None])
def test_holder_with_bad_pid_is_unreadable(pid: object) -> None:
    # pid 0 / -1 must never reach os.kill: they address process groups.
    with pytest.raises(ValueError):
        LockHolder.from_json(json.dumps({"host": "h", "pid": pid, "since": "", "purpose": ""}))


def test_holder_roundtrip() -> None:
    one = LockHolder.current("backup.all", now=NOW)
    assert LockHolder.from_json(one.to_json()) == one
    assert one.since == "2026-11-24T15:00:00Z"
    assert one.describe() == f"{one.host} pid {one.pid} since 2026-11-24T15:00:00Z (backup.all)"


# -- exclusion --------------------------------------------------------------------


def test_concurrent_threads_hold_it_one_at_a_time(lock_path: Path) -> None:
    inside, most, done = [0], [0], []
    guard = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            with make_lock(lock_path, timeout=60, poll_interval=0.005):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.002)
                with guard:
                    inside[0] -= 1
        done.append(True)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(done) == 6
    assert most[0] == 1
    assert not lock_path.exists()


WORKER = """
import os, sys, time
from pathlib import Path
from fabfile.core.lock import StoreLock
lock_path, log = Path(sys.argv[1]), sys.argv[2]
for _ in range(5):
    with StoreLock(lock_path, timeout=60, purpose="worker", poll_interval=0.005):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"in\\n")
        time.sleep(0.005)
        os.write(fd, b"out\\n")
        os.close(fd)
"""


def test_concurrent_processes_hold_it_one_at_a_time(lock_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(lock_path), str(log)], env=env)
        for _ in range(4)
    ]
    assert [proc.wait(timeout=120) for proc in procs] == [0] * 4
    lines = log.read_text().split()
    assert lines == ["in", "out"] * 20
    assert not lock_path.exists()
