"""The `fab` program: Fabric's own, bound to this project's tasks and inventory.

Stock `fab -H prod -- uptime` loads no fabfile, so it connects to the raw name with any host
key accepted. Here the ad-hoc command runs as `hosts.exec`: through the inventory, with its
host-key checks, one summary and exit codes like every other task. The tasks are bound
in, so `fab` also works from any directory (a laptop cron job, say).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from contextlib import suppress
from typing import Any, NoReturn

from fabric import Config, Executor
from fabric import __version__ as fabric_version
from fabric.main import Fab

from . import ns


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
        except SystemExit as ended:
            if exit:
                _leave(ended.code)
            raise
        if exit:
            _leave(0)

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


def _leave(code: object) -> NoReturn:
    """End the process as the interpreter would, without its teardown: freeing every object
    one by one (a long history's manifests, paramiko, the modules), then a last garbage
    collection, cost every run 0.05-0.2 s for a process that is ending. Work still running
    on a thread is waited for and atexit handlers run, as at a normal exit; every file and
    connection of ours is closed by then."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a reader gone, or a stream already closed
            stream.flush()
    if code is None or isinstance(code, int):
        os._exit(code or 0)
    print(code, file=sys.stderr)  # sys.exit("message"): said, and exit status 1
    os._exit(1)


program = _InventoryFab(
    name="Fabric",
    version=fabric_version,
    namespace=ns,
    executor_class=_InventoryExecutor,
    config_class=Config,
)
