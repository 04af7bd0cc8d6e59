"""The transport against a real sshd: quoting, transfers, host keys, failures."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest

from fabfile.core import crypto
from fabfile.core import transport as transport_module
from fabfile.core.errors import (
    ConnectError,
    HostKeyError,
    RemoteCommandError,
    TransferError,
)
from fabfile.core.transport import StreamResult, Transport

pytestmark = pytest.mark.sshd


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def stream(t: Transport, argv: list[str], dest: Path, *, label: str) -> StreamResult:
    """A command's output into a new file at dest, as backup.logs takes its tar: the file
    is removed if the stream fails."""
    with crypto.stored_stream(dest, []) as stored:
        return t.stream_to(argv, stored.write, where=stored.path, label=label)


def test_run_quotes_every_argument(sshd, tmp_path):
    canary = tmp_path / "canary"
    hostile = [f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`", "a b\nc"]
    with Transport(sshd.host) as t:
        result = t.run(["printf", "%s|", *hostile])
    assert result.stdout == "|".join(hostile) + "|"
    assert not canary.exists()


def test_run_failure_names_command_and_reason(sshd):
    with Transport(sshd.host) as t, pytest.raises(RemoteCommandError, match="exited 3: boom"):
        t.run(["sh", "-c", "echo boom >&2; exit 3"])


def test_pull_binary_file_byte_for_byte(sshd, tmp_path):
    src = sshd.root / "blob.bin"
    data = os.urandom(3 * 1024 * 1024) + bytes(range(256))
    src.write_bytes(data)
    src.chmod(0o640)
    dest = tmp_path / "store" / "blob.bin"
    with Transport(sshd.host) as t:
        info = t.pull(str(src), dest)
    assert dest.read_bytes() == data
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.size == len(data) and info.mode == 0o640 and info.owner == "root"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert leftovers(dest.parent) == ["blob.bin"]


def test_pull_missing_file_leaves_nothing(sshd, tmp_path):
    dest = tmp_path / "out"
    with Transport(sshd.host) as t, pytest.raises(TransferError, match="no such file"):
        t.pull("/nonexistent/zachot.env", dest / "zachot.env")
    assert leftovers(dest) == []


def test_push_installs_atomically_with_mode(sshd, tmp_path):
    src = tmp_path / "payload"
    src.write_bytes(b"KEY=value\n" * 1000)
    target = sshd.root / "pushed.env"
    target.write_text("old")
    with Transport(sshd.host) as t:
        info = t.push(src, str(target), mode=0o600, owner="root", group="root")
    assert target.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert info.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert not [p for p in sshd.root.iterdir() if "zachot-part" in p.name]


def test_push_into_missing_directory_fails_clearly(sshd, tmp_path):
    src = tmp_path / "payload"
    src.write_text("x")
    with Transport(sshd.host) as t, pytest.raises(TransferError, match="no such directory"):
        t.push(src, "/nonexistent-dir/file")


def test_stream_of_tar_is_checked(sshd, tmp_path):
    logs = sshd.root / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "api.log").write_text("line\n" * 5000)
    dest = tmp_path / "logs.tar"
    with Transport(sshd.host) as t:
        result = stream(t, ["tar", "-C", str(logs), "-cf", "-", "."], dest, label="logs")
    assert result.size == dest.stat().st_size
    assert result.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()


def test_stream_passes_bytes_on_while_the_command_runs(sshd, tmp_path):
    # The agent hands on what the command has written so far, not MiB blocks: a slow
    # producer (tar | zstd of a live log, over a far link) streams instead of arriving at
    # its end. The command ends only once its first bytes reached us (or after 20 s).
    got: list[bytes] = []
    flag = tmp_path / "seen"

    def write(data: bytes) -> None:
        got.append(data)
        flag.touch()

    slow = f"head -c 1000 /dev/zero; i=0; while [ ! -e {flag} ] && [ $i -lt 400 ]; do "
    slow += "sleep 0.05; i=$((i+1)); done; [ -e " + str(flag) + " ]"
    started = time.monotonic()
    with Transport(sshd.host) as t:
        result = t.stream_to(["sh", "-c", slow], write, where=tmp_path / "out", label="slow")
    assert b"".join(got) == bytes(1000) and result.size == 1000
    assert time.monotonic() - started < 15, "the first bytes waited for the command's end"


def test_failed_stream_command_keeps_no_file(sshd, tmp_path):
    dest = tmp_path / "x.tar"
    with Transport(sshd.host) as t, pytest.raises(TransferError, match="exited 2"):
        stream(t, ["tar", "-cf", "-", "/nonexistent"], dest, label="logs")
    assert leftovers(tmp_path) == []


def accepted_logins(sshd) -> int:
    return sshd.log.read_text().count("Accepted publickey")


def test_unknown_host_key_is_refused_before_login(sshd):
    host = sshd.with_known_hosts("")
    before = accepted_logins(sshd)
    with pytest.raises(HostKeyError, match=r"not known: ssh-ed25519 SHA256:\S+.*hosts.trust"):
        Transport(host).open()
    assert accepted_logins(sshd) == before


def test_changed_host_key_is_refused_with_both_fingerprints(sshd, tmp_path):
    import paramiko

    other = paramiko.Ed25519Key.from_private_key_file(str(sshd.root / "client_key"))
    host = sshd.with_known_hosts(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other.get_base64()}\n")
    before = accepted_logins(sshd)
    with pytest.raises(HostKeyError, match=r"HOST KEY CHANGED.*SHA256:.*SHA256:"):
        Transport(host).open()
    assert accepted_logins(sshd) == before


def test_accept_new_records_first_key_then_verifies(sshd):
    host = sshd.with_known_hosts("", host_key_policy="accept-new")
    with Transport(host) as t:
        t.run(["true"])
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519" in host.known_hosts.read_text()
    with Transport(host) as t:  # now known: strict lookup succeeds
        t.run(["true"])


def test_connection_refused_is_one_clear_error(sshd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(ConnectError, match="refused"):
        Transport(replace(sshd.host, port=closed_port)).open()


def test_silent_server_times_out_within_connect_timeout(sshd):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    host = replace(sshd.host, port=listener.getsockname()[1], connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(ConnectError, match=r"no SSH handshake in 1 s; is sshd hung"):
        Transport(host).open()
    assert time.monotonic() - started < 10
    listener.close()


@pytest.mark.parametrize("closing", ["fin", "rst"])
def test_a_port_that_closes_at_once_is_not_called_a_timeout(sshd, closing):
    """As a firewall or proxy that takes every connection and drops it (FIN) or resets it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def close_each() -> None:
        with suppress(OSError):
            while True:
                conn = listener.accept()[0]
                if closing == "rst":  # linger 0: close() sends RST
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

    threading.Thread(target=close_each, daemon=True).start()
    host = replace(sshd.host, port=listener.getsockname()[1], connect_timeout=30)
    started = time.monotonic()
    with pytest.raises(
        ConnectError, match="closed before the SSH handshake finished; is it an SSH port"
    ):
        Transport(host).open()
    assert time.monotonic() - started < 5
    listener.close()


def test_connection_killed_mid_pull_leaves_no_file(sshd, tmp_path):
    dest = tmp_path / "big.bin"
    script = "head -c 4000000 /dev/urandom; sleep 30"
    sessions_before = set(sshd.sessions())
    with Transport(sshd.host) as t:
        killer = threading.Timer(
            1.0, lambda: [os.kill(p, 9) for p in set(sshd.sessions()) - sessions_before]
        )
        killer.start()
        with pytest.raises(TransferError):
            stream(t, ["sh", "-c", script], dest, label="big")
        killer.join()
    assert leftovers(tmp_path) == []


def test_connection_killed_mid_push_keeps_the_old_file_then_a_retry_works(
    sshd, tmp_path, monkeypatch
):
    target = sshd.root / "interrupted.env"
    target.write_bytes(b"OLD=1\n")
    src = tmp_path / "big"
    src.write_bytes(os.urandom(192 * 1024 * 1024))
    sessions_before = set(sshd.sessions())
    with Transport(sshd.host) as t:
        killer = threading.Timer(
            0.2, lambda: [os.kill(p, 9) for p in set(sshd.sessions()) - sessions_before]
        )
        # Armed once the local hash is done: on a busy machine hashing 192 MB outlasts 0.2 s,
        # and a kill before the push's channel opens is a reconnect, not a kill mid-push.
        hash_file = transport_module._sha256_file

        def hash_then_arm(path: Path) -> str:
            digest = hash_file(path)
            killer.start()
            return digest

        monkeypatch.setattr(transport_module, "_sha256_file", hash_then_arm)
        with pytest.raises(TransferError):
            t.push(src, str(target))
        monkeypatch.undo()
        killer.join()
    assert target.read_bytes() == b"OLD=1\n"
    with Transport(sshd.host) as t:
        t.push(src, str(target))
    assert target.read_bytes() == src.read_bytes()
    assert not [p.name for p in sshd.root.iterdir() if "zachot-part" in p.name]


def _descendants(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [d for c in map(int, children.split()) for d in (c, *_descendants(c))]


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_a_link_gone_silent_mid_transfer_fails_at_the_idle_timeout(
    sshd, tmp_path, monkeypatch, direction
):
    """The server stops reading and writing (SIGSTOP), as a link that drops packets does."""
    monkeypatch.setattr(transport_module, "IDLE_TIMEOUT", 2.0)
    target = sshd.root / f"silent-{direction}.bin"
    target.write_bytes(b"OLD=1\n")
    src = tmp_path / "big"
    src.write_bytes(os.urandom(64 * 1024 * 1024))
    before = set(sshd.sessions())
    frozen: list[int] = []

    def freeze() -> None:
        for session in set(sshd.sessions()) - before:
            frozen.extend([session, *_descendants(session)])
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):  # a short-lived child already gone
                os.kill(pid, signal.SIGSTOP)

    try:
        with Transport(sshd.host) as t:
            timer = threading.Timer(0.3, freeze)
            timer.start()
            started = time.monotonic()
            with pytest.raises(TransferError, match="no data for 2s; the connection looks dead"):
                if direction == "push":
                    t.push(src, str(target))
                else:
                    script = f"cat {src}; sleep 60"
                    stream(t, ["sh", "-c", script], tmp_path / "pulled", label="big")
            timer.join()
            assert frozen and time.monotonic() - started < 30
    finally:
        for pid in frozen:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
    assert target.read_bytes() == b"OLD=1\n"
    assert not (tmp_path / "pulled").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["big"]


def test_stdin_does_not_wait_for_the_exec_answer(sshd, monkeypatch):
    """A command fed on stdin costs two round trips, not three: the channel's open, then the
    exec request with stdin behind it, as OpenSSH's client sends them. paramiko's
    exec_command waits for the server's answer first (measured through a 30 ms link:
    120-230 ms for `cat` with stdin, against 80-85 ms without the wait)."""
    waited: list[str] = []
    wait = paramiko.Channel._wait_for_event

    def recorded(chan):
        waited.append("exec answer")
        return wait(chan)

    monkeypatch.setattr(paramiko.Channel, "_wait_for_event", recorded)
    with Transport(sshd.host) as t:
        assert t.run(["cat"], stdin=b"ping").stdout == "ping"
        assert t.run(["sh", "-c", "exit 3"], check=False).exit_code == 3
    assert waited == []


def test_together_runs_side_by_side_on_one_connection(sshd, tmp_path):
    """The first command waits for a file only the second makes: run one after the other,
    the first would give up; side by side, both end well. Errors come back in order."""
    flag = tmp_path / "made-by-the-second"
    wait = f"for i in $(seq 100); do [ -e {flag} ] && exit 0; sleep 0.05; done; exit 1"
    with Transport(sshd.host) as t:
        first, second = t.together(
            lambda: t.run(["sh", "-c", wait], check=False),
            lambda: t.run(["touch", str(flag)]),
        )
        assert (first.exit_code, second.exit_code) == (0, 0)
        with pytest.raises(RemoteCommandError, match="exited 3"):
            t.together(lambda: t.run(["true"]), lambda: t.run(["sh", "-c", "exit 3"]))


def test_the_ssh_socket_sends_small_messages_at_once(sshd):
    """TCP_NODELAY, as OpenSSH sets it: without it Nagle held the second of two channel
    opens for a delayed ACK (35 ms became 70 ms per exchange through the 30 ms link)."""
    with Transport(sshd.host) as t:
        sock = t.connection.client.get_transport().sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
