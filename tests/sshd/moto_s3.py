"""A second real S3 server for the tests: moto's (`moto_server`, moto[server] in .venv), run
as its own process on a free loopback port. Unlike `rclone serve s3` (sandbox/s3.py), it
implements Object Lock: buckets created with it are versioned, keep each version's
retention, and refuse to delete a version before its retain-until date (COMPLIANCE mode).

moto accepts any access keys; the tests still go through boto3's credential chain.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
KEYS = {"AWS_ACCESS_KEY_ID": "ZKMOTOTEST", "AWS_SECRET_ACCESS_KEY": "moto-accepts-any-secret"}


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    pid: int

    def env(self) -> dict[str, str]:
        return dict(KEYS)

    def client(self):
        """A client of our own to set buckets up and read back what the server holds."""
        return boto3.session.Session(
            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
        ).client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def bucket(self, *, lock: bool) -> str:
        """A fresh bucket (with Object Lock, hence versioning, if `lock`)."""
        name = f"zachot-{'lock' if lock else 'plain'}-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
        return name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(state: Path) -> Iterator[MotoS3]:
    """moto_server on 127.0.0.1:<free port>, stopped (by its pid) on the way out."""
    if not MOTO_SERVER.exists():
        raise RuntimeError(f"{MOTO_SERVER} missing; moto[server] is pinned in pyproject.toml")
    port = _free_port()
    log = (state / "moto.log").open("ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited; see {state / 'moto.log'}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not listen on {port}")
            time.sleep(0.1)
        yield MotoS3(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
