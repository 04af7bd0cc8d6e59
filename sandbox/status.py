"""`sandbox.status`: each box, its address and the state of the services that matter."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from sandbox import box
from sandbox.config import Paths
from sandbox.fleet import PROD_UNITS, health
from sandbox.state import recorded_specs

UNITS = (*PROD_UNITS, "ssh")


def box_states(paths: Paths | None = None) -> list[dict[str, str]]:
    paths = paths or Paths()
    rows = []
    for spec in recorded_specs(paths):
        row = {"box": spec.name, "address": spec.address, "running": "no", "system": "-"}
        row.update(dict.fromkeys(UNITS, "-"))
        row["health"] = "-"
        if box.leader_pid(paths, spec) is not None:
            row["running"] = "yes"
            sysstate = box.exec_in(paths, spec, ["systemctl", "is-system-running"], timeout=10)
            row["system"] = sysstate.stdout.strip() or "?"
            r = box.exec_in(paths, spec, ["systemctl", "is-active", *UNITS], timeout=10)
            row.update(zip(UNITS, r.stdout.split(), strict=False))
            if spec.role == "prod":
                h = health(spec)
                row["health"] = f"ok {h.get('version')}" if h else "down"
        rows.append(row)
    return rows


def print_status(paths: Paths | None = None) -> None:
    rows = box_states(paths)
    table = Table(title="zachot sandbox")
    headers = ("box", "address", "running", "system", "api", "worker", "redis", "ssh", "health")
    for col in headers:
        table.add_column(col, no_wrap=True)
    colors = {
        "active": "green",
        "yes": "green",
        "running": "green",
        "inactive": "dim",
        "no": "red",
        "failed": "red",
        "down": "red",
        "degraded": "yellow",
    }
    for row in rows:
        cells = []
        for v in row.values():
            color = colors.get(v.split()[0] if v else v)
            cells.append(f"[{color}]{v}[/]" if color else v)
        table.add_row(*cells)
    Console(width=120).print(table if rows else "sandbox is down (no boxes recorded)")
