"""The sandbox's user-space WAN link: its spec, its timing model, and the proxy on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest

from sandbox.wan import Link, LinkSpec, check_target, listen, route_target

pytestmark = pytest.mark.unit


def test_spec_parses_rtt_and_rate() -> None:
    spec = LinkSpec.parse("30ms,100mbit")
    assert spec.rtt == pytest.approx(0.030)
    assert spec.rate == pytest.approx(100e6 / 8)
    assert str(spec) == "30ms,100mbit"
    assert LinkSpec.parse("0.5ms,2Gbit").rate == pytest.approx(2e9 / 8)


@pytest.mark.parametrize("bad", ["30ms", "30,100mbit", "30ms,0mbit", "20000ms,1mbit", ""])
def test_spec_refuses_anything_else(bad: str) -> None:
    with pytest.raises(ValueError, match="RTT"):
        LinkSpec.parse(bad)


def test_link_serialises_then_delays() -> None:
    link = Link(delay=0.015, rate=1000.0)
    assert link.schedule(100, now=10.0) == pytest.approx(10.115)
    # Queued behind the first: the link is busy until 10.1.
    assert link.schedule(100, now=10.05) == pytest.approx(10.215)
    # After an idle gap nothing is owed.
    assert link.schedule(10, now=20.0) == pytest.approx(20.025)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.231.1.1", "10.232.1.2", "192.168.0.2"])
def test_proxy_targets_only_box_addresses(address: str) -> None:
    with pytest.raises(ValueError, match="not a sandbox box"):
        check_target(address)
    assert check_target("10.231.7.2") == "10.231.7.2"


def test_proxy_routes_to_a_box_sshd_or_a_loopback_server_only() -> None:
    # A loopback server (the bench's S3 server) only as 127.0.0.1:PORT, never another host.
    assert route_target("10.231.7.2") == ("10.231.7.2", 22)
    assert route_target("127.0.0.1:9400") == ("127.0.0.1", 9400)
    for text in ("10.0.0.5:80", "10.231.7.2:80", "127.0.0.1:x", "127.0.0.1"):
        with pytest.raises(ValueError):
            route_target(text)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _measure(rtt: float, rate: float, bulk: int) -> tuple[float, float, float]:
    """(connect + first echo, one more echo, bulk echoed back) in seconds through the proxy."""
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    target = echo.sockets[0].getsockname()[:2]
    [proxy] = await listen(LinkSpec(rtt, rate), {0: target})
    port = proxy.sockets[0].getsockname()[1]
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x")
    await reader.readexactly(1)
    first = time.monotonic() - t0
    t1 = time.monotonic()
    writer.write(b"y")
    await reader.readexactly(1)
    again = time.monotonic() - t1
    t2 = time.monotonic()
    writer.write(b"z" * bulk)
    await reader.readexactly(bulk)
    moved = time.monotonic() - t2
    writer.close()
    proxy.close()
    echo.close()
    return first, again, moved


def test_proxy_adds_the_round_trip_and_caps_the_rate() -> None:
    # 40 ms RTT, 8 Mbit/s (1 MB/s) each way; 500 kB out and back through both directions.
    first, again, moved = asyncio.run(_measure(0.040, 1e6, 500_000))
    assert 0.055 <= first <= 0.15  # half an RTT to connect, then one round trip
    assert 0.038 <= again <= 0.09
    # Both directions stream at once: about 0.5 s of serialisation plus one RTT.
    assert 0.5 <= moved <= 0.9
