"""Serve <state>/serve (git repo, wheels) over HTTP on the host-side veth addresses only.

Run as `python -m sandbox.serve DIR PORT ADDR...`; start_server() does that detached and
records the pid so stop_server() ends exactly that process.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sandbox.config import SANDBOX_PKG, Paths
from sandbox.procs import pid_alive_with


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {fmt % args}\n")


def serve_forever(root: str, port: int, addresses: list[str]) -> None:
    handler = functools.partial(QuietHandler, directory=root)
    servers = [ThreadingHTTPServer((a, port), handler) for a in addresses]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()


def _marker(paths: Paths) -> str:
    return str(paths.serve)  # in the cmdline; tells our server from a reused pid


def server_running(paths: Paths, addresses: list[str]) -> bool:
    """Our server is up and bound to exactly these addresses."""
    want = ",".join(addresses)
    return pid_alive_with(paths.server_pid, [_marker(paths), want])


def start_server(paths: Paths, port: int, addresses: list[str]) -> int:
    if server_running(paths, addresses):
        return int(paths.server_pid.read_text())
    stop_server(paths)
    paths.run.mkdir(parents=True, exist_ok=True)
    log = open(paths.run / "serve.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.serve", _marker(paths), str(port), ",".join(addresses)],
        cwd=SANDBOX_PKG.parent,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # outlives the invoke process that started it
    )
    log.close()
    paths.server_pid.write_text(f"{proc.pid}\n")
    time.sleep(0.3)
    if proc.poll() is not None:
        raise RuntimeError(f"repo/wheel server exited; see {paths.run / 'serve.log'}")
    return proc.pid


def stop_server(paths: Paths) -> None:
    if pid_alive_with(paths.server_pid, [_marker(paths)]):
        pid = int(paths.server_pid.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
    paths.server_pid.unlink(missing_ok=True)


if __name__ == "__main__":
    serve_forever(sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","))
