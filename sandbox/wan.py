"""WAN mode: the operator reaches every box through a distant link, built in user space.

This kernel has no netem, so a small asyncio TCP proxy stands in for the link: one loopback
port per box (127.0.0.1:WAN_BASE_PORT+index) forwards to that box's sshd only. Each
direction is one shared link: bytes are serialised at the bandwidth cap (a token bucket
with no burst), then delivered half a round trip later; a new connection waits half a round
trip before it reaches the box, as a SYN would. `sandbox/inventory-wan.yml` is the sandbox
inventory with every host pointed at its proxy port, so tests and benchmarks choose the
mode by choosing the inventory.

Run as `python -m sandbox.wan MARKER RTT_MS MBIT PORT=ADDRESS ...`; start() does that
detached and records the pid, stop() ends exactly that process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.config import INVENTORY, SANDBOX_PKG, SUBNET, BoxSpec, Paths
from sandbox.inventory import write_wan_inventory
from sandbox.keys import host_key
from sandbox.procs import pid_alive_with

LISTEN = "127.0.0.1"
WAN_BASE_PORT = 22300  # below the ephemeral range, so no outgoing socket holds it
SSH_PORT = 22
CHUNK = 64 * 1024
QUEUE_CHUNKS = 256  # per direction and connection: well above the bandwidth-delay product
INVENTORY_WAN = SANDBOX_PKG / "inventory-wan.yml"
_SPEC_RE = re.compile(r"(?P<rtt>[0-9.]+)ms,(?P<rate>[0-9.]+)(?P<unit>[kmg])bit", re.IGNORECASE)
_UNITS = {"k": 1e3, "m": 1e6, "g": 1e9}


@dataclass(frozen=True)
class LinkSpec:
    rtt: float  # seconds, both ways
    rate: float  # bytes per second, each direction

    @classmethod
    def parse(cls, text: str) -> LinkSpec:
        """'30ms,100mbit' (also kbit/gbit); ValueError with the expected form otherwise."""
        found = _SPEC_RE.fullmatch(text.strip())
        if found is None:
            raise ValueError(f"WAN link {text!r}: expected RTTms,RATE[kmg]bit, e.g. 30ms,100mbit")
        rtt, rate = float(found["rtt"]) / 1000, float(found["rate"]) * _UNITS[found["unit"].lower()]
        if not (0 <= rtt <= 10 and rate > 0):
            raise ValueError(f"WAN link {text!r}: RTT must be 0-10000 ms and the rate above 0")
        return cls(rtt, rate / 8)

    def __str__(self) -> str:
        return f"{self.rtt * 1000:g}ms,{self.rate * 8 / 1e6:g}mbit"


class Link:
    """One direction, shared by every connection: a queue drained at `rate`, then `delay`."""

    def __init__(self, delay: float, rate: float) -> None:
        self.delay, self.rate = delay, rate
        self.free = 0.0  # when the link has sent everything queued so far

    def schedule(self, size: int, now: float) -> float:
        """When `size` bytes handed over at `now` arrive at the far end."""
        self.free = max(now, self.free) + size / self.rate
        return self.free + self.delay


def proxy_port(spec: BoxSpec) -> int:
    return WAN_BASE_PORT + spec.index


def check_target(address: str) -> str:
    """Only a sandbox box's own address: the proxy must never reach anything else."""
    ip = ipaddress.ip_address(address)
    if ip not in ipaddress.ip_network(f"{SUBNET}.0.0/16") or not address.endswith(".2"):
        raise ValueError(f"{address} is not a sandbox box address ({SUBNET}.N.2)")
    return address


def route_target(text: str) -> tuple[str, int]:
    """A route's far end: a box's sshd (`ADDRESS`), or a server of this machine on
    loopback (`127.0.0.1:PORT`, e.g. the bench's own S3 server); nothing else."""
    address, _, port = text.partition(":")
    if not port:
        return check_target(address), SSH_PORT
    if address != LISTEN or not port.isdigit():
        raise ValueError(f"{text} is neither a sandbox box address nor {LISTEN}:PORT")
    return address, int(port)


# -- the proxy process ----------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link) -> None:
    """Copy one direction through the link; EOF is passed on as a half-close."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)

    async def take_in() -> None:
        while data := await reader.read(CHUNK):
            await queue.put((link.schedule(len(data), loop.time()), data))
        await queue.put(None)

    async def deliver() -> None:
        while (item := await queue.get()) is not None:
            at, data = item
            await asyncio.sleep(max(0.0, at - loop.time()))
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    await _together(take_in(), deliver())


async def _together(*coros) -> None:
    """Run until all finish; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()


async def _connection(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    target: tuple[str, int],
    up: Link,
    down: Link,
) -> None:
    try:
        await asyncio.sleep(up.delay)  # the connection request travels out first
        box_r, box_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    try:
        # Either side failing (a reset) ends both; a clean half-close lets the other finish.
        await _together(_pipe(client_r, box_w, up), _pipe(box_r, client_w, down))
    finally:
        for w in (box_w, client_w):
            w.close()


async def listen(link: LinkSpec, routes: dict[int, tuple[str, int]]) -> list[asyncio.Server]:
    """One listener on LISTEN:port per route, all sharing the link's two directions."""
    up, down = Link(link.rtt / 2, link.rate), Link(link.rtt / 2, link.rate)
    servers = []
    for port, target in routes.items():

        async def handle(r, w, target: tuple[str, int] = target) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await _connection(r, w, target, up, down)

        servers.append(await asyncio.start_server(handle, LISTEN, port, reuse_address=True))
    return servers


async def serve(link: LinkSpec, routes: dict[int, tuple[str, int]]) -> None:
    """Listen until SIGTERM; main() has checked that every target is a box."""
    servers = await listen(link, routes)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str]) -> None:
    _marker, rtt_ms, mbit, *pairs = argv
    link = LinkSpec.parse(f"{rtt_ms}ms,{mbit}mbit")
    routes = {int(p): route_target(a) for p, a in (x.split("=", 1) for x in pairs)}
    asyncio.run(serve(link, routes))


# -- started and stopped by the sandbox tasks -----------------------------------------------


def _pid_file(paths: Paths) -> Path:
    return paths.run / "wan.pid"


def _settings_file(paths: Paths) -> Path:
    return paths.run / "wan.json"


def _marker(paths: Paths) -> str:
    return str(_settings_file(paths))  # in the cmdline; tells our proxy from a reused pid


def running(paths: Paths) -> LinkSpec | None:
    """The link the proxy runs with, or None when it is not running."""
    if not pid_alive_with(_pid_file(paths), ["sandbox.wan", _marker(paths)]):
        return None
    data = json.loads(_settings_file(paths).read_text())
    return LinkSpec(data["rtt"], data["rate"])


def start(paths: Paths, specs: list[BoxSpec], link: LinkSpec) -> int:
    """(Re)start the proxy for these boxes; returns its pid."""
    stop(paths)
    paths.run.mkdir(parents=True, exist_ok=True)
    routes = [f"{proxy_port(s)}={check_target(s.address)}" for s in specs]
    _settings_file(paths).write_text(
        json.dumps({"rtt": link.rtt, "rate": link.rate, "boxes": [s.name for s in specs]}) + "\n"
    )
    log = open(paths.run / "wan.log", "ab")  # noqa: SIM115 - handed to the child
    argv = [sys.executable, "-m", "sandbox.wan", _marker(paths)]
    argv += [f"{link.rtt * 1000:g}", f"{link.rate * 8 / 1e6:g}", *routes]
    proc = subprocess.Popen(
        argv,
        cwd=SANDBOX_PKG.parent,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # outlives the invoke process that started it
    )
    log.close()
    _pid_file(paths).write_text(f"{proc.pid}\n")
    _wait_listening([proxy_port(s) for s in specs], proc, paths)
    return proc.pid


def _wait_listening(ports: list[int], proc: subprocess.Popen, paths: Paths) -> None:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"WAN proxy exited; see {paths.run / 'wan.log'}")
        if all(listening(port) for port in ports):
            return
        time.sleep(0.05)
    raise RuntimeError(f"WAN proxy is not listening after 10 s; see {paths.run / 'wan.log'}")


def listening(port: int) -> bool:
    """A socket listens on LISTEN:port (read from /proc: connecting would reach the box)."""
    want = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(f[1] == want and f[3] == "0A" for f in (ln.split() for ln in lines))


def known_hosts_file(paths: Paths) -> Path:
    return paths.known_hosts.with_name("known_hosts-wan")


def write_known_hosts(
    paths: Paths,
    specs: list[BoxSpec],
    ports: dict[str, int] | None = None,
    path: Path | None = None,
) -> Path:
    """Each box's own host key, filed under the name a client of its proxy port looks up
    (ports: box name -> port, for a proxy other than the sandbox's own)."""
    lines = []
    for spec in specs:
        key_type, blob = host_key(paths, spec).with_suffix(".pub").read_text().split()[:2]
        port = ports[spec.name] if ports else proxy_port(spec)
        lines.append(f"[{LISTEN}]:{port} {key_type} {blob}\n")
    path = path or known_hosts_file(paths)
    path.write_text("".join(lines))
    return path


def enable(paths: Paths, specs: list[BoxSpec], link: LinkSpec) -> Path:
    """Start the proxy for every box and write the WAN inventory; returns its path."""
    if not INVENTORY.exists():
        raise RuntimeError(f"{INVENTORY} is missing; bring the sandbox up first: ./dev sandbox.up")
    start(paths, specs, link)
    ports = {s.name: proxy_port(s) for s in specs}
    return write_wan_inventory(ports, write_known_hosts(paths, specs), INVENTORY_WAN)


def stop(paths: Paths) -> None:
    pid_file = _pid_file(paths)
    if pid_alive_with(pid_file, ["sandbox.wan", _marker(paths)]):
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    _settings_file(paths).unlink(missing_ok=True)
    INVENTORY_WAN.unlink(missing_ok=True)
    known_hosts_file(paths).unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1:])
