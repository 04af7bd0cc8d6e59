"""One network namespace and veth pair per box, created and removed by exact name."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sandbox.config import SUBNET, BoxSpec


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, "ip", *args], check=check, capture_output=True, text=True)


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def network_ok(spec: BoxSpec) -> bool:
    """Both ends exist and the host side has its address (a half-built pair is rebuilt)."""
    if not (netns_exists(spec.netns) and link_exists(spec.veth_host)):
        return False
    out = _ip("-o", "addr", "show", "dev", spec.veth_host, check=False).stdout
    return f"inet {spec.host_ip}/24" in out


def create_network(spec: BoxSpec) -> None:
    """netns + veth; the box routes only the sandbox /16 via its host side, no default route."""
    if network_ok(spec):
        return
    remove_network(spec)
    _ip("netns", "add", spec.netns)
    _ip("link", "add", spec.veth_host, "type", "veth", "peer", "name", spec.veth_box)
    _ip("link", "set", spec.veth_box, "netns", spec.netns)
    _ip("addr", "add", f"{spec.host_ip}/24", "dev", spec.veth_host)
    _ip("link", "set", spec.veth_host, "up")
    _ip("addr", "add", f"{spec.address}/24", "dev", spec.veth_box, netns=spec.netns)
    _ip("link", "set", spec.veth_box, "up", netns=spec.netns)
    _ip("link", "set", "lo", "up", netns=spec.netns)
    # Reach the repo/wheel server on any host-side address (the host answers for all of its
    # local addresses); IP forwarding stays off, so nothing routes beyond the host.
    _ip("route", "add", f"{SUBNET}.0.0/16", "via", spec.host_ip, netns=spec.netns)


def remove_network(spec: BoxSpec) -> None:
    """Delete this box's veth and netns if present (deleting one veth end removes both)."""
    if link_exists(spec.veth_host):
        _ip("link", "del", spec.veth_host)
    if netns_exists(spec.netns):
        _ip("netns", "del", spec.netns)
