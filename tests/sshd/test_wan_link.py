"""The sandbox's WAN proxy (sandbox/wan.py) in front of a real sshd: the project's own
Transport connects through it with the host key filed under [127.0.0.1]:PORT, each exchange
costs the link's round trip, and a bulk pull runs at the link's rate."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabfile.core.transport import Transport
from sandbox.wan import LinkSpec, listen

LINK = LinkSpec.parse("30ms,100mbit")
PULL = 10_000_000


@pytest.fixture
def proxy_port(sshd) -> Iterator[int]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    routes = {0: ("127.0.0.1", sshd.port)}
    servers = asyncio.run_coroutine_threadsafe(listen(LINK, routes), loop).result(5)
    yield servers[0].sockets[0].getsockname()[1]
    asyncio.run_coroutine_threadsafe(_shut(servers), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


async def _shut(servers: list[asyncio.Server]) -> None:
    """Close the listeners and end every connection still being proxied."""
    for server in servers:
        server.close()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _far(sshd, port: int):
    """The sshd's host as reached through the proxy: its key filed under [127.0.0.1]:PORT."""
    key = " ".join(sshd.host.known_hosts.read_text().split()[1:3])
    return sshd.with_known_hosts(f"[127.0.0.1]:{port} {key}\n", port=port)


def _timed_connect(host) -> float:
    """Connect, verify the host key, authenticate: no command, so no shell start-up noise."""
    t0 = time.monotonic()
    with Transport(host):
        pass
    return time.monotonic() - t0


def _banner_seconds(port: int) -> float:
    """Connect and wait for sshd's banner: through the link, one round trip more (sshd's
    own start-up, about 25 ms, varies; it overlaps the connection's way out)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert sock.recv(64).startswith(b"SSH-2.0-")
    return time.monotonic() - t0


def test_each_exchange_pays_the_round_trip(sshd, proxy_port: int) -> None:
    added = min(_banner_seconds(proxy_port) for _ in range(5)) - min(
        _banner_seconds(sshd.port) for _ in range(5)
    )
    assert 0.6 * LINK.rtt <= added <= 1.5 * LINK.rtt + 0.01, f"{added * 1000:.1f} ms"
    # The project's Transport through the link (key under [127.0.0.1]:PORT): TCP, banners,
    # key exchange, service request, auth are a handful of round trips, not dozens.
    near = min(_timed_connect(sshd.host) for _ in range(3))
    far = min(_timed_connect(_far(sshd, proxy_port)) for _ in range(3))
    assert 3 * LINK.rtt <= far <= near + 12 * LINK.rtt, f"{near:.3f} s -> {far:.3f} s"


def _timed_pull(host, source: Path, into: Path) -> float:
    t0 = time.monotonic()
    with Transport(host) as transport:
        transport.pull(str(source), into)
    seconds = time.monotonic() - t0
    assert into.read_bytes() == source.read_bytes()
    return seconds


def test_bulk_pull_runs_at_the_link_rate(sshd, proxy_port: int, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(PULL))
    near = _timed_pull(sshd.host, source, tmp_path / "near.bin")
    far = _timed_pull(_far(sshd, proxy_port), source, tmp_path / "far.bin")
    data_time = PULL / LINK.rate  # 0.8 s
    # Never faster than the link; local hashing and fsync overlap the transfer, so the
    # far pull costs at most the data time plus some round trips more than the near one.
    assert data_time <= far <= near + data_time * 1.25 + 20 * LINK.rtt, f"{near:.2f} -> {far:.2f}"
