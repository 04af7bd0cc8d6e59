"""A real OpenSSH sshd on a loopback port with throwaway keys, one per test session."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from fabfile.core.model import Host
from tests.sshd.helpers import SSHD, free_port, start_sshd


@dataclass
class Sshd:
    root: Path
    port: int
    process: subprocess.Popen
    host: Host  # a Host that reaches this sshd with a known key
    log: Path

    def sessions(self) -> list[int]:
        """PIDs of per-connection sshd processes (children of the listener)."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def with_known_hosts(self, text: str, **changes: object) -> Host:
        path = self.root / f"kh-{time.monotonic_ns()}"
        path.write_text(text)
        return replace(self.host, known_hosts=path, **changes)


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().split()[:2]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Sshd:
    if os.geteuid() != 0 or not Path(SSHD).exists():
        message = "the sshd tier needs root and Debian's openssh-server (run ./dev test)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("sshd")
    root.chmod(0o700)
    host_key_type, host_key = _keygen(root / "host_key")
    _keygen(root / "client_key")
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = free_port()
    proc, log = start_sshd(
        root,
        port,
        root,
        "LogLevel VERBOSE",
        "Ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,"
        "chacha20-poly1305@openssh.com",
    )
    known = root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key_type} {host_key}\n")
    host = Host(
        name="local",
        address="127.0.0.1",
        port=port,
        user="root",
        identity_file=root / "client_key",
        known_hosts=known,
        sudo=False,
        connect_timeout=5,
    )
    yield Sshd(root=root, port=port, process=proc, host=host, log=log)
    proc.terminate()
    proc.wait(timeout=10)
