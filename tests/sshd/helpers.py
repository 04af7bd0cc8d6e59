"""Shared by the sshd tier: a fake zachot server in a temp dir, and an inventory for it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from fabfile.core.model import Host, Layout

CANARY = "canary-7f3e9a1b5c"
ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("layout", "redis", "dramatiq", "store", "backup")


def make_server(base: Path) -> Layout:
    """The runbook's layout, rooted in a temp dir on the sshd's machine."""
    etc, units, logs, backups, repo = (base / d for d in ("etc", "units", "logs", "bk", "repo"))
    for d in (etc, units / "zachot-api.service.d", logs, repo, repo / "infra"):
        d.mkdir(parents=True)
    env = etc / "zachot.env"
    env.write_text(f"REDIS_URL=redis://127.0.0.1:6379/0\nWORKER_CONCURRENCY=2\nAPI_KEY={CANARY}\n")
    env.chmod(0o600)
    for unit in ("zachot-api.service", "zachot-worker.service"):
        (units / unit).write_text(f"[Service]\nExecStart=/bin/true {unit}\n")
    (units / "zachot-api.service.d" / "override.conf").write_text("[Service]\nNice=5\n")
    (repo / "infra" / "zachot-api.service").write_text("[Service]\nExecStart=/bin/old\n")
    (logs / "api.log").write_text("started\n" * 1000)
    (logs / "api.log.1").write_text("yesterday\n" * 1000)
    (base / "outside.txt").write_text("SHOULD-NOT-BE-ARCHIVED")
    (logs / "link.log").symlink_to(base / "outside.txt")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    subprocess.run([*git, "tag", "v1.0.0"], check=True)
    return Layout(
        root=str(base),
        env_file=str(env),
        unit_dir=str(units),
        logs_dir=str(logs),
        repo_dir=str(repo),
        backup_dir=str(backups),
        units_repo_dir="infra",
        service_user="root",  # the sshd tier runs as root; no zachot account here
    )


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return str(value) if isinstance(value, Path) else value


def write_inventory(host: Host, path: Path) -> Path:
    """An inventory file naming `host` as "local", with every section it carries."""
    sections = {
        name: {k: _plain(v) for k, v in dataclasses.asdict(getattr(host, name)).items()
               if v is not None}
        for name in SECTIONS
    }  # fmt: skip
    data = {
        "all": {
            "vars": {
                "user": host.user,
                "identity_file": str(host.identity_file),
                "known_hosts": str(host.known_hosts),
                "sudo": False,
                **sections,
            },
            "hosts": {"local": {"address": host.address, "port": host.port}},
        }
    }
    path.write_text(yaml.safe_dump(data))
    return path


def fab(inventory: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed `fab` with this inventory, plain output; no traceback, no canary."""
    env = {**os.environ, "ZACHOT_INVENTORY": str(inventory), "NO_COLOR": "1"}
    done = subprocess.run(
        [Path(sys.executable).parent / "fab", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert CANARY not in done.stdout + done.stderr
    return done


SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(root: Path, port: int, keys: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    """A real sshd on 127.0.0.1:port using keys/host_key and keys/authorized_keys, listening."""
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {keys}/host_key",
        f"AuthorizedKeysFile {keys}/authorized_keys",
        f"PidFile {root}/sshd.pid",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        *extra,
    ]
    (root / "sshd_config").write_text("\n".join(lines) + "\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = root / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config"), "-E", str(log)])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, log
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"sshd did not start: {log.read_text()}") from None
            time.sleep(0.05)
