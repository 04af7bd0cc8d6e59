"""Operator keypair, per-box host keys and the sandbox known_hosts file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sandbox.config import BoxSpec, Paths


def _keygen(path: Path, comment: str) -> None:
    if path.exists() and path.with_suffix(".pub").exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


def ensure_operator_key(paths: Paths) -> Path:
    _keygen(paths.key, "zachot-sandbox-operator")
    return paths.key


def host_key(paths: Paths, spec: BoxSpec) -> Path:
    """The box's ed25519 host key, generated once and kept across reset and down,
    so known_hosts stays valid for the lifetime of the state directory."""
    path = paths.root / "ssh" / "hostkeys" / spec.name / "ssh_host_ed25519_key"
    _keygen(path, f"root@{spec.name}")
    return path


def write_known_hosts(paths: Paths, specs: list[BoxSpec]) -> Path:
    lines = []
    for spec in specs:
        key_type, blob = host_key(paths, spec).with_suffix(".pub").read_text().split()[:2]
        lines.append(f"{spec.address} {key_type} {blob}\n")
    paths.known_hosts.write_text("".join(lines))
    return paths.known_hosts


def ensure_age_identity(paths: Paths) -> tuple[Path, str]:
    """The operator's age identity for encrypted env/redis backups, and its recipient."""
    from pyrage import x25519

    path = paths.root / "age" / "identity.txt"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{x25519.Identity.generate()}\n")
    identity = x25519.Identity.from_str(path.read_text().strip())
    return path, str(identity.to_public())
