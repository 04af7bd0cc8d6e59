"""Operator keypair, per-box host keys and the sandbox known_hosts file."""

from __future__ import annotations

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
