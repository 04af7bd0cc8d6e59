"""Figure 8's setting: a private WAN link in front of prod9, the vault and a private S3
server, and a history of prod9 in a private store.

Nothing here touches the sandbox's own WAN proxy or S3 server (figure 7 and other users
may have them on): this lab starts its own `rclone serve s3` (sandbox/s3.py) in the
workspace and its own proxy process (`python -m sandbox.wan`, at figure 7's link settings)
on free loopback ports, and close() stops both by the pids it started and removes every
directory it made on the vault.
"""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sandbox import box_exec, history, s3, wan
from sandbox.config import SANDBOX_PKG, Paths
from sandbox.inventory import wan_inventory_data
from sandbox.state import recorded_specs

from .measure import BenchError
from .wanlab import LINK, VAULT, VaultRsync
from .workspace import Workspace

RSYNC_USER = "benchrsync8"


class S3Lab:
    def __init__(self, workspace: Workspace, box: str, days: int) -> None:
        self.paths = Paths()
        self.workspace, self.box, self.days = workspace, box, days
        self.tag = f"bench-s3-{secrets.token_hex(4)}"
        self.store = workspace.path("s3-store")
        self.state = workspace.path("s3-server")
        self.rsync = VaultRsync(self.paths, RSYNC_USER)
        self.server: s3.S3Server | None = None
        self.s3_port = 0
        self._proxy: subprocess.Popen[bytes] | None = None
        self._data: dict = {}
        self._vault_dirs: list[str] = []
        self._n = itertools.count(1)
        self.local = workspace.path("s3-local.yml")  # the inventory without an off-site copy
        self.last: dict[str, Path | None] = {}  # kind -> the inventory of its last full copy

    # -- set up and tear down --

    def open(self) -> str:
        """Server, link, inventories, history; returns one line saying what was made."""
        specs = {s.name: s for s in recorded_specs(self.paths)}
        if self.box not in specs:
            raise BenchError(f"no box {self.box} in the sandbox: invoke sandbox.up --extra-prod 9")
        self.state.mkdir(mode=0o700)
        self.server = s3.start(self.state, bucket="bench")
        boxes = [specs[self.box], specs[VAULT]]
        ports = {spec.name: s3.free_port() for spec in boxes}
        self.s3_port = s3.free_port()
        self._start_proxy(
            [f"{ports[s.name]}={wan.check_target(s.address)}" for s in boxes]
            + [f"{self.s3_port}={self.server.endpoint.removeprefix('http://')}"],
            [*ports.values(), self.s3_port],
        )
        known = wan.write_known_hosts(self.paths, boxes, ports, self.workspace.path("s3-known"))
        source = yaml.safe_load(self.workspace.source.read_text())
        source["all"]["vars"]["store"] = {"path": str(self.store)}
        data = wan_inventory_data(source, dict.fromkeys(source["all"]["hosts"], 1), known)
        for name, port in ports.items():
            data["all"]["hosts"][name]["port"] = port
        data["all"]["hosts"] = {n: data["all"]["hosts"][n] for n in ports}  # only our boxes
        data["all"]["children"] = {}
        self._data = data
        # The history: local only (no off-site box), so every copy below starts empty.
        self._write_inventory("s3-local", offsite=None)
        made = history.generate(self.local, self.box, self.days)
        return made.summary()

    def _start_proxy(self, routes: list[str], ports: list[int]) -> None:
        marker = str(self.state / "proxy")  # in the cmdline: names this lab's proxy
        argv = [sys.executable, "-m", "sandbox.wan", marker]
        argv += [f"{LINK.rtt * 1000:g}", f"{LINK.rate * 8 / 1e6:g}", *routes]
        log = (self.state / "proxy.log").open("ab")
        self._proxy = subprocess.Popen(argv, cwd=SANDBOX_PKG.parent, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=log)  # fmt: skip
        log.close()
        end = time.monotonic() + 10
        while not all(wan.listening(port) for port in ports):
            if self._proxy.poll() is not None or time.monotonic() > end:
                raise BenchError(f"the lab's WAN proxy did not start; see {self.state}/proxy.log")
            time.sleep(0.05)

    def close(self) -> list[str]:
        said = []
        for name in self._vault_dirs:
            history.remove_offsite(VAULT, name)
        if self._vault_dirs:
            said.append(f"{VAULT}: removed {len(self._vault_dirs)} {self.tag}-* directories")
        said += self.rsync.disable()
        if self._proxy is not None:
            self._proxy.terminate()
            self._proxy.wait(10)
            said.append("the lab's WAN proxy stopped")
        if self.server is not None:
            s3.stop(self.state)
            said.append("the lab's S3 server stopped")
        return said

    # -- inventories: one per off-site destination --

    def _write_inventory(self, name: str, *, offsite: str | None, s3_dir: str = "") -> Path:
        data = yaml.safe_load(yaml.safe_dump(self._data))
        backup = data["all"]["vars"]["backup"]
        backup.pop("offsite_host", None)
        if offsite == "sftp":
            backup.update(offsite_host=VAULT, offsite_dir=s3_dir)
        elif offsite == "s3":
            assert self.server is not None
            backup.update(offsite_s3_endpoint=self.endpoint, offsite_s3_bucket=self.server.bucket,
                          offsite_dir=s3_dir)  # fmt: skip
        path = self.workspace.path(f"{name}.yml")
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"  # through the link

    def fresh(self, kind: str) -> tuple[Path, str]:
        """An inventory whose off-site copy (kind: s3 or sftp) is a new, empty directory:
        (inventory, that directory's name)."""
        name = f"{self.tag}-{kind}-{next(self._n)}"
        if kind == "sftp":
            self._vault_dirs.append(name)
        return self._write_inventory(name, offsite=kind, s3_dir=name), name

    def fresh_prefix(self, who: str) -> str:
        """A new, empty key prefix in the bucket (the server's directory goes with the lab)."""
        return f"{self.tag}-{who}-{next(self._n)}"

    def fresh_vault_dir(self) -> str:
        """A new directory name on the vault for rsync (removed by close)."""
        name = f"{self.tag}-rsync-{next(self._n)}"
        self._vault_dirs.append(name)
        return name

    # -- what both sides run with --

    def env(self) -> dict[str, str]:
        """boto3's credentials (a file, as sandbox.up's), for fab."""
        assert self.server is not None
        return {**os.environ, **self.server.env()}

    def rclone_env(self) -> dict[str, str]:
        """rclone's S3 remote, from the environment (keys never in argv)."""
        assert self.server is not None
        return {
            **os.environ,
            "RCLONE_CONFIG": "/dev/null",
            "RCLONE_S3_PROVIDER": "Other",
            "RCLONE_S3_ENDPOINT": self.endpoint,
            "RCLONE_S3_ACCESS_KEY_ID": self.server.access_key,
            "RCLONE_S3_SECRET_ACCESS_KEY": self.server.secret_key,
            "RCLONE_S3_REGION": "us-east-1",
        }

    def rclone_argv(self, prefix: str) -> list[str]:
        assert self.server is not None
        target = f":s3:{self.server.bucket}/{prefix}/{self.box}"
        return [str(s3.RCLONE), "copy", f"{self.store}/{self.box}", target]

    def offsite_bytes(self, kind: str, name: str) -> int:
        """Bytes of the host's off-site copy under `name` (kind: s3 or sftp)."""
        if kind == "s3":
            return self.bucket_bytes(name)
        where = f"{history.VAULT_ROOT}/{name}/{self.box}"
        done = box_exec(VAULT, ["find", where, "-type", "f", "-printf", "%s\\n"])
        return sum(int(n) for n in done.stdout.split())

    def bucket_bytes(self, prefix: str) -> int:
        assert self.server is not None
        return tree_bytes(self.server.root / self.server.bucket / prefix / self.box)


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
