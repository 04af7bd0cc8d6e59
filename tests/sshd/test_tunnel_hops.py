"""Holes 7 and 9 of issue 10, against real sshd (and redis-server) processes on loopback.

7: the Redis tunnel's local end is reachable by the operator only: another local user can
neither connect to it nor race for it.
9: a ProxyJump hop from ~/.ssh/config is verified like the final host: unknown key, exit 5.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fabfile.core import redis_access
from fabfile.core.errors import ExitCode, HostKeyError
from fabfile.core.model import RedisSettings
from fabfile.core.transport import Transport
from tests.sshd.helpers import free_port, start_sshd
from tests.sshd.test_redis import REDIS_SERVER, start_redis, stop_redis

pytestmark = pytest.mark.sshd

LOCAL_USER = "advtunnel"
# Run as the other local user: connect to the tunnel's local end and send PING.
PROBE = textwrap.dedent(
    """
    import socket, sys
    kind, where = sys.argv[1], sys.argv[2]
    try:
        if kind == "unix":
            s = socket.socket(socket.AF_UNIX)
            s.connect(where)
        else:
            s = socket.create_connection(("127.0.0.1", int(where)), timeout=5)
        s.settimeout(5)
        s.sendall(b"PING\\r\\n")
        print("REACHED", s.recv(64))
    except OSError as exc:
        print("REFUSED", type(exc).__name__)
    """
)


@pytest.fixture
def local_user() -> Iterator[str]:
    subprocess.run(["userdel", "-r", LOCAL_USER], capture_output=True)
    subprocess.run(["useradd", "--no-create-home", LOCAL_USER], check=True)
    try:
        yield LOCAL_USER
    finally:
        subprocess.run(["userdel", LOCAL_USER], check=True)


@pytest.fixture
def redis_host(sshd, tmp_path):
    if not Path(REDIS_SERVER).exists():
        pytest.fail("the sshd tier needs redis-server (apt-get install redis-server)")
    server = start_redis(tmp_path / "redis")
    url = f"redis://127.0.0.1:{server.port}/0"
    yield replace(sshd.host, redis=RedisSettings(data_dir=str(server.dir), url=url))
    stop_redis(server)


def _endpoint(client) -> tuple[str, str]:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return "unix", kwargs["path"]
    return "tcp", str(kwargs["port"])


@pytest.mark.attack("redis tunnel", checked="another local user cannot connect to the tunnel")
def test_another_local_user_cannot_reach_the_tunnel(redis_host, local_user):
    with Transport(redis_host) as transport, redis_access.open_redis(transport) as client:
        kind, where = _endpoint(client)
        probe = subprocess.run(
            ["runuser", "-u", local_user, "--", "python3", "-c", PROBE, kind, where],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert client.ping()  # the operator's own client still works
        if kind == "unix":
            folder = Path(where).parent
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            assert folder.stat().st_uid == os.geteuid()
    assert "REACHED" not in probe.stdout, probe.stdout + probe.stderr
    assert kind == "unix", "the tunnel listens on a TCP port any local user can reach"
    assert not Path(where).parent.exists()  # torn down with the tunnel


def test_tunnel_serves_several_connections_and_reports_a_refused_port(redis_host):
    with Transport(redis_host) as transport, redis_access.open_redis(transport) as client:
        pipe = [client.connection_pool.get_connection() for _ in range(3)]
        for conn in pipe:
            conn.send_command("PING")
            assert conn.read_response() in (b"PONG", "PONG", True)
        for conn in pipe:
            client.connection_pool.release(conn)
    down = replace(redis_host, redis=replace(redis_host.redis, url="redis://127.0.0.1:1/0"))
    with (
        Transport(down) as transport,
        pytest.raises(redis_access.RedisUnavailable) as refused,
        redis_access.open_redis(transport),
    ):
        pass
    assert "connection refused on the server" in refused.value.message


# -- ProxyJump ------------------------------------------------------------------


@pytest.fixture(scope="module")
def jump_sshd(sshd, tmp_path_factory) -> Iterator[tuple[int, str, Path]]:
    """A second sshd, the jump host: its own host key, the same client key."""
    root = tmp_path_factory.mktemp("jump")
    root.chmod(0o700)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")], check=True
    )
    (root / "authorized_keys").write_text((sshd.root / "client_key.pub").read_text())
    port = free_port()
    proc, log = start_sshd(root, port, root, "LogLevel VERBOSE")
    kind, key = (root / "host_key.pub").read_text().split()[:2]
    yield port, f"[127.0.0.1]:{port} {kind} {key}\n", log
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def ssh_config(sshd, jump_sshd, tmp_path, monkeypatch) -> None:
    """~/.ssh/config sends the host through the jump host, as an operator's would."""
    port = jump_sshd[0]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host local\n  ProxyJump jumpbox\n\n"
        f"Host jumpbox\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        f"  IdentityFile {sshd.root / 'client_key'}\n"
    )
    monkeypatch.setenv("HOME", str(home))


def _accepted(log: Path) -> int:
    return log.read_text().count("Accepted publickey")


@pytest.mark.attack("ProxyJump host keys", checked="unknown hop key: exit 5 naming the hop")
def test_a_hop_with_an_unknown_key_is_refused_before_anything_is_sent(sshd, jump_sshd, ssh_config):
    port, _line, log = jump_sshd
    host = sshd.with_known_hosts(sshd.host.known_hosts.read_text())  # the target only
    logins = _accepted(log)
    with pytest.raises(HostKeyError) as refused, Transport(host) as transport:
        transport.run(["true"])
    assert refused.value.exit_code == ExitCode.HOST_KEY
    assert f"ProxyJump hop 127.0.0.1:{port}" in refused.value.message
    assert "host key is not known" in refused.value.message
    assert _accepted(log) == logins  # no authentication was even tried


def test_a_hop_with_a_known_key_carries_the_connection(sshd, jump_sshd, ssh_config):
    _port, line, log = jump_sshd
    host = sshd.with_known_hosts(sshd.host.known_hosts.read_text() + line)
    logins = _accepted(log)
    with Transport(host) as transport:
        assert transport.run(["id", "-un"]).stdout.strip() == pwd.getpwuid(0).pw_name
    assert _accepted(log) == logins + 1  # really through the hop
