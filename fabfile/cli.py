"""The `fab` program: Fabric's own, bound to this project's tasks and inventory.

Stock `fab -H prod -- uptime` loads no fabfile, so it connects to the raw name with any host
key accepted. Here the ad-hoc command runs as `hosts.exec`: through the inventory, with its
host-key checks, one summary and exit codes like every other task. The tasks are bound
in, so `fab` also works from any directory (a laptop cron job, say).
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from typing import Any

from fabric import Config, Executor
from fabric import __version__ as fabric_version
from fabric.main import Fab

from . import ns

# The interpreter's last garbage collection walks every object still alive (a long history's
# parsed manifests, paramiko, the modules): about 0.15 s of every run, for nothing, since the
# process is ending. Frozen objects are left out of it; files and sessions are closed by then.
atexit.register(gc.freeze)


class _InventoryExecutor(Executor):
    def expand_calls(self, calls: list[Any], apply_hosts: bool = True) -> list[Any]:
        # Fabric would append `c.run(remainder)` on raw hostnames; the program has already
        # queued the remainder as hosts.exec instead.
        remainder, self.core.remainder = self.core.remainder, ""
        try:
            return super().expand_calls(calls, apply_hosts)
        finally:
            self.core.remainder = remainder


class _InventoryFab(Fab):
    def run(self, argv: list[str] | str | None = None, exit: bool = True) -> None:
        try:
            super().run(argv, exit)
        except BrokenPipeError:
            # The reader (`fab --list | head`) went away after what it wanted.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def update_config(self) -> None:
        super().update_config()
        # Fabric calls a task once per -H entry; the task's first call needs the whole list
        # (groups, comma lists) to resolve it once and sum up every host.
        self.config._overrides.setdefault("zachot", {})["hosts"] = self.args.hosts.value
        self.config.merge()

    def execute(self) -> None:
        if self.core.remainder:
            self.tasks = [*self.tasks, ("hosts.exec", {"command": self.core.remainder})]
        super().execute()


program = _InventoryFab(
    name="Fabric",
    version=fabric_version,
    namespace=ns,
    executor_class=_InventoryExecutor,
    config_class=Config,
)
