"""The log item: error lines written since each service last started."""

from __future__ import annotations

import posixpath

from ..model import Host
from . import fixes
from .model import FAIL, NA, OK, HostFacts, Row


def rows(host: Host, facts: HostFacts) -> list[Row]:
    scan = facts.logs
    item = f"errors in {host.layout.logs_dir} since the last start"
    if scan.error:
        return [Row("logs", item, NA, scan.error)]
    bad = [f for f in scan.files if f.errors]
    if not bad:
        names = ", ".join(f.name for f in scan.files)
        said = f"0 error lines in {names}" if names else "nothing logged since the last start"
        return [Row("logs", item, OK, said)]
    found = []
    for f in bad:
        notes = [f"since {f.since}"]
        notes += [f"{f.untimed} without a timestamp"] if f.untimed else []
        notes += ["last 8 MiB scanned"] if f.truncated else []
        said = f"{f.errors} error line(s) ({', '.join(notes)}); last: " + " | ".join(f.last)
        path = posixpath.join(host.layout.logs_dir, f.name)
        found.append(Row("logs", f"errors in {f.name}", FAIL, said, fixes.read_log(host, path)))
    return found
