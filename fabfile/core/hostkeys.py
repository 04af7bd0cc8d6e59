"""Host key verification: Fabric accepts any key (AutoAddPolicy); we never do.

A host must be in the user's known_hosts or in the file the inventory names.
'accept-new' (opt-in per inventory) records a first-seen key, like OpenSSH's
StrictHostKeyChecking=accept-new; a changed key is refused under every policy.

Part of the transport layer's machinery (policies and known_hosts files, all local):
connecting, the host-key scan of hosts.trust included, is transport.py's.
"""

from __future__ import annotations

import os
from pathlib import Path

import paramiko

from .errors import HostKeyError
from .model import Host

USER_KNOWN_HOSTS = Path("~/.ssh/known_hosts").expanduser()


def known_hosts_name(address: str, port: int) -> str:
    """The name OpenSSH and paramiko file a key under."""
    return address if port == 22 else f"[{address}]:{port}"


def describe(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def trust_hint(host: Host) -> str:
    return f"check the fingerprint out of band, then run: fab -H {host.name} hosts.trust"


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, host: Host, hop: str | None = None) -> None:
        self.host, self.hop = host, hop

    def missing_host_key(self, client, hostname, key) -> None:
        if self.hop:  # hosts.trust records the final host only; a hop is the operator's call
            raise HostKeyError(
                f"{self.host.name}: ProxyJump hop {self.hop} host key is not known: "
                f"{describe(key)}; nothing was sent; check the fingerprint out of band, then "
                f"add it to {self.host.known_hosts or USER_KNOWN_HOSTS} (ssh-keyscan)"
            )
        raise HostKeyError(
            f"{self.host.name} ({hostname}): host key is not known: {describe(key)}; "
            + trust_hint(self.host)
        )


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, host: Host, record_in: Path) -> None:
        self.host, self.record_in = host, record_in

    def missing_host_key(self, client, hostname, key) -> None:
        append_known_host(self.record_in, hostname, key)


def policy_for(host: Host, *, hop: str | None = None) -> paramiko.MissingHostKeyPolicy:
    """The policy for the host, or for one of its ProxyJump hops (named `hop`): the same."""
    if host.host_key_policy == "accept-new":
        return _AcceptNewPolicy(host, host.known_hosts or USER_KNOWN_HOSTS)
    return _StrictPolicy(host, hop)


def load_known_hosts(client: paramiko.SSHClient, host: Host) -> None:
    """Load the user's known_hosts and the inventory's file into a client."""
    if USER_KNOWN_HOSTS.exists():
        client.load_system_host_keys()
    if host.known_hosts and host.known_hosts.exists():
        try:
            client.load_host_keys(str(host.known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyError(f"cannot read known_hosts {host.known_hosts}: {exc}") from exc


def changed_key_error(host: Host, exc: paramiko.BadHostKeyException) -> HostKeyError:
    return HostKeyError(
        f"{host.name} ({exc.hostname}): HOST KEY CHANGED, connection refused before "
        f"anything was sent: server offers {describe(exc.key)}, known_hosts has "
        f"{describe(exc.expected_key)}; if the box was rebuilt, remove the old entry "
        f"(ssh-keygen -R {exc.hostname!s}) and {trust_hint(host)}"
    )


def append_known_host(path: Path, name: str, key: paramiko.PKey) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as out:
        out.write(f"{name} {key.get_name()} {key.get_base64()}\n")


def known_key(path: Path, name: str, key_type: str) -> paramiko.PKey | None:
    if not path.exists():
        return None
    keys = paramiko.HostKeys(str(path)).lookup(name)
    return keys.get(key_type) if keys else None
