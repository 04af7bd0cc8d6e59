"""Figure 7's setting: the WAN link on, a 730-day history of one box, rsync on the vault.

Everything it changes is undone by close(): the WAN proxy (if it started it), the history's
directory on the vault, the vault's temporary `ops` login and rsync, and the test logs.
"""

from __future__ import annotations

import glob
import secrets
import shlex
from pathlib import Path

import yaml

from fabfile.core.inventory import load_inventory
from fabfile.core.model import Host
from sandbox import box_exec, history, wan
from sandbox.config import Paths
from sandbox.inventory import wan_inventory_data
from sandbox.state import recorded_specs

from .commands import ssh_argv
from .measure import BenchError
from .workspace import Workspace

LINK = wan.LinkSpec.parse("30ms,100mbit")
VAULT = "vault"
RSYNC_DEB = "/var/cache/apt/archives/rsync_*_amd64.deb"
# The vault user is SFTP-only (ForceCommand): rsync logs in as a temporary user allowed
# one thing, `sudo -u vault rsync`, so it reads the vault's files as their owner.
# Figure 8 runs beside figure 7 with a login of its own (benchrsync8): each removes only its
# own login, and rsync only where it installed it.
RSYNC_USER = "benchrsync"
RSYNC_INSTALL = "cat > /var/tmp/rsync.deb && dpkg -i /var/tmp/rsync.deb"
RSYNC_SETUP = """set -e
id {user} >/dev/null 2>&1 || useradd -M -s /bin/sh {user}
echo '{user} ALL=(vault) NOPASSWD: /usr/bin/rsync' > /etc/sudoers.d/{user}
chmod 0440 /etc/sudoers.d/{user}
umask 022; cat > /etc/ssh/authorized_keys/{user}
"""
RSYNC_TEARDOWN = "rm -f /etc/ssh/authorized_keys/{user} /etc/sudoers.d/{user}; userdel {user}"
RSYNC_REMOVE = "rm -f /var/tmp/rsync.deb; dpkg -r rsync"


class WanLab:
    def __init__(self, workspace: Workspace, box: str, days: int) -> None:
        self.paths = Paths()
        self.source = workspace.source
        self.box, self.days = box, days
        self.offsite_dir = f"bench-wan-{secrets.token_hex(4)}"
        self.store = workspace.path("wan-store")
        self.local_inventory = workspace.path("wan-local.yml")
        self.inventory = workspace.path("wan.yml")
        self._started_wan = False
        self.rsync = VaultRsync(self.paths, RSYNC_USER)

    def open(self) -> str:
        """Link, inventories, history; returns one line saying what was made."""
        running = wan.running(self.paths)
        if running is not None and running != LINK:
            raise BenchError(f"WAN mode is on at {running}; this figure needs {LINK}")
        specs = recorded_specs(self.paths)
        if running is None:
            wan.enable(self.paths, specs, LINK)
            self._started_wan = True
        data = yaml.safe_load(self.source.read_text())
        settings = data["all"]["vars"]
        settings["store"] = {"path": str(self.store)}
        settings["backup"]["offsite_dir"] = self.offsite_dir
        self.local_inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        ports = {s.name: wan.proxy_port(s) for s in specs}
        wan_data = wan_inventory_data(data, ports, wan.known_hosts_file(self.paths))
        self.inventory.write_text(yaml.safe_dump(wan_data, sort_keys=False))
        made = history.generate(self.local_inventory, self.box, self.days)
        return made.summary()

    def host(self, name: str) -> Host:
        """A host as the WAN inventory has it (address 127.0.0.1, its proxy port)."""
        return load_inventory(self.inventory).host(name)

    def enable_rsync(self) -> None:
        self.rsync.enable()

    def rsync_argv(self) -> list[str]:
        """`rsync -a --dry-run` of the host's local store to its off-site copy, through the link."""
        remote = f"/srv/vault/backups/{self.offsite_dir}/{self.box}/"
        return self.rsync.argv(self.host(VAULT), self.store / self.box, remote, "--dry-run")

    def close(self) -> list[str]:
        said = []
        history.remove_offsite(VAULT, self.offsite_dir)
        said.append(f"{VAULT}: removed {self.offsite_dir}")
        said += self.rsync.disable()
        if self._started_wan:
            wan.stop(self.paths)
            said.append("WAN proxy stopped")
        return said


class VaultRsync:
    """rsync in the vault (it has no network: the host's .deb, installed there) and a
    temporary key login `user` that may only run rsync as the vault user."""

    def __init__(self, paths: Paths, user: str) -> None:
        self.paths, self.user = paths, user
        self.enabled = self.installed = False

    def enable(self) -> None:
        debs = sorted(glob.glob(RSYNC_DEB))
        if not debs:
            raise BenchError("no rsync .deb on this machine: apt-get install rsync")
        self.enabled = True
        if box_exec(VAULT, ["sh", "-c", "command -v rsync"]).returncode != 0:
            self.installed = True
            _in_vault(["sh", "-c", RSYNC_INSTALL], Path(debs[-1]).read_bytes())
        pub = self.paths.key.with_suffix(".pub").read_bytes()
        _in_vault(["sh", "-c", RSYNC_SETUP.format(user=self.user)], pub)

    def argv(self, vault: Host, local: Path, remote: str, *flags: str) -> list[str]:
        """`rsync -a FLAGS local/ vault:remote` as the temporary login, through `vault`'s
        address (the link's)."""
        ssh = ssh_argv(vault, "")[:-2]  # ssh and its options, without user@host and command
        return ["rsync", "-a", *flags, "-e", shlex.join(ssh), "--rsync-path=sudo -u vault rsync",
                f"{local}/", f"{self.user}@{vault.address}:{remote}"]  # fmt: skip

    def disable(self) -> list[str]:
        if not self.enabled:
            return []
        box_exec(VAULT, ["sh", "-c", RSYNC_TEARDOWN.format(user=self.user)])
        said = [f"{VAULT}: removed the {self.user} login"]
        if self.installed:
            box_exec(VAULT, ["sh", "-c", RSYNC_REMOVE])
            said.append(f"{VAULT}: removed rsync")
        self.enabled = False
        return said


def _in_vault(argv: list[str], data: bytes) -> None:
    try:
        history.box_exec_bytes(VAULT, argv, data, timeout=120)
    except RuntimeError as exc:
        raise BenchError(str(exc)) from None
