"""From `fab -H a,group ...` to per-host work, with failures collected.

Fabric calls a task once per -H entry and stops at the first exception, so a
dead host would stop the rest and groups would not expand. The first call of a
task therefore resolves the whole -H list through the inventory, works through
every host (bounded parallelism, like a GroupResult) and prints one summary;
later calls of the same task in this process find it done and return.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke import Context
from invoke.exceptions import Exit

from . import output
from .errors import ExitCode, UsageError, ZachotError
from .inventory import Inventory, inventory_path, load_inventory
from .model import Host

_finished_tasks: set[str] = set()
_HERE = Path(__file__).resolve()
_PACKAGE = _HERE.parents[1]  # fabfile/: where the toolkit's own frames live


@dataclass(frozen=True)
class Outcome:
    host: str
    ok: bool
    detail: str
    seconds: float
    exit_code: ExitCode = ExitCode.OK


def load(c: Context) -> Inventory:
    configured = c.config.get("zachot", {}).get("inventory")
    return load_inventory(inventory_path(configured))


def requested_hosts(c: Context) -> str | None:
    """The raw -H value: the whole list when run by our `fab` (cli.py), else this call's host."""
    return c.config.get("zachot", {}).get("hosts") or getattr(c, "original_host", None)


def target_hosts(
    c: Context, inventory: Inventory, *, required: bool = True, offsite_boxes: bool = True
) -> list[Host]:
    """The -H hosts. Without -H: an error if required, else every host (less the off-site
    boxes, which only hold backups, when offsite_boxes is False)."""
    pattern = requested_hosts(c)
    if pattern:
        return inventory.resolve(pattern)
    if required:
        known = ", ".join(inventory.names())
        raise UsageError(f"name a host or group with -H (known names: {known})")
    hosts = list(inventory.hosts.values())
    if offsite_boxes:
        return hosts
    vaults = {h.backup.offsite_host for h in hosts}
    return [h for h in hosts if h.name not in vaults]


def failed(host: str, exc: Exception, seconds: float = 0.0) -> Outcome:
    """A host's row for what went wrong there: a ZachotError's message and code, or, for an
    exception nobody expected (a malformed answer, a full disk), its type, message and place."""
    if isinstance(exc, ZachotError):
        return Outcome(host, False, exc.message, seconds, exc.exit_code)
    return Outcome(host, False, unexpected(exc), seconds, ExitCode.FAILED)


def attempt(host: Host, work: Callable[[Host], str]) -> Outcome:
    """work(host) as that host's row; whatever it raises stays that host's (not
    KeyboardInterrupt or SystemExit, which are not Exceptions and stop the run)."""
    started = time.monotonic()
    try:
        detail = work(host)
    except Exception as exc:  # one host's surprise must not sink the rest
        return failed(host.name, exc, time.monotonic() - started)
    return Outcome(host.name, True, detail, time.monotonic() - started)


def unexpected(exc: BaseException) -> str:
    """One line for an exception no code here expected, instead of a traceback: its type, its
    message (printed masked and escaped like any server text) and the line of ours it hit."""
    said = " ".join(str(exc).split()) or "no message"
    # An OSError (a full disk, a permission) speaks for itself; anything else is our bug or
    # an answer we could not read, which the operator can only report.
    advice = "" if isinstance(exc, OSError) else " (a bug or a malformed answer; report this line)"
    return f"unexpected {type(exc).__name__}{_where(exc)}: {said}{advice}"


def _where(exc: BaseException) -> str:
    """The last line of the toolkit's own code the exception went through (not this file's
    wrappers), so a report names where without a traceback."""
    hits = [
        (path, frame.lineno)
        for frame in traceback.extract_tb(exc.__traceback__)
        if _PACKAGE in (path := Path(frame.filename).resolve()).parents and path != _HERE
    ]
    return f" at {hits[-1][0].relative_to(_PACKAGE.parent)}:{hits[-1][1]}" if hits else ""


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any error into one error line and its exit code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exit:
            raise  # finish()'s summary code, already explained
        except ZachotError as exc:
            output.error(exc.message)
            raise Exit(code=int(exc.exit_code)) from None
        except KeyboardInterrupt:
            output.error("interrupted; nothing was left half-written")
            raise Exit(code=130) from None
        except BrokenPipeError:
            # The reader (e.g. `| head`) went away; what it read was complete.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=0) from None
        except Exception as exc:  # never a traceback for the operator
            output.error(unexpected(exc))
            raise Exit(code=int(ExitCode.FAILED)) from None

    return wrapper


def first_call(task_name: str) -> bool:
    """True once per process for a task: the call that handles every host."""
    if task_name in _finished_tasks:
        return False
    _finished_tasks.add(task_name)
    return True


def for_each_host(
    hosts: list[Host],
    work: Callable[[Host], str],
    *,
    title: str,
    parallel: int = 1,
) -> list[Outcome]:
    """Run work(host) for every host; a failing host, however it fails, never stops the others."""
    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {parallel}")
    with ThreadPoolExecutor(max_workers=min(parallel, len(hosts)) or 1) as pool:
        outcomes = list(pool.map(lambda host: attempt(host, work), hosts))
    if len(outcomes) == 1 and outcomes[0].ok:
        output.info(f"{outcomes[0].host}: {outcomes[0].detail}")
    elif len(outcomes) > 1:
        output.table(
            title,
            ["host", "result", "seconds", "detail"],
            [(o.host, "ok" if o.ok else "FAILED", f"{o.seconds:.1f}", o.detail) for o in outcomes],
        )
    return outcomes


def finish(outcomes: list[Outcome]) -> None:
    """Exit with the code that sums up the run (see README, Exit codes)."""
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return
    if len(outcomes) == 1:
        output.error(failed[0].detail)
        raise Exit(code=int(failed[0].exit_code))
    names = ", ".join(o.host for o in failed)
    output.error(f"{len(failed)} of {len(outcomes)} hosts failed: {names}")
    codes = {o.exit_code for o in failed}
    if len(failed) < len(outcomes):
        raise Exit(code=int(ExitCode.PARTIAL))
    raise Exit(code=int(codes.pop()) if len(codes) == 1 else int(ExitCode.FAILED))


def confirm(question: str, *, yes: bool) -> None:
    """Ask before acting; refuse in a non-interactive run without --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} — refusing without --yes in a non-interactive run")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("cancelled; nothing was changed")


def run_per_host(
    c: Context,
    task_name: str,
    work: Callable[[Host], str],
    *,
    title: str,
    parallel: int = 1,
) -> None:
    """The body of every per-host task: resolve -H, work each host, sum up."""
    if not first_call(task_name):
        return
    hosts = target_hosts(c, load(c))
    finish(for_each_host(hosts, work, title=title, parallel=parallel))
