"""backup.list: what is in the operator's store."""

from __future__ import annotations

from datetime import UTC, datetime

from invoke import task

from ..core import output
from ..core.output import human_age, human_size
from ..core.runner import guarded, load, target_hosts
from ..core.store import Store


@task(name="list", help={"kind": "only this kind: env, units, logs or redis", "json": "as JSON"})
@guarded
def list_(c, kind=None, json=False):
    """Show the backups in the local store: host, kind, id, age, size, verified."""
    hosts = target_hosts(c, load(c), required=False)
    now = datetime.now(UTC)
    stores = {h.name: Store(h.store.path) for h in hosts}
    refs = [ref for h in hosts for ref in stores[h.name].list(host=h.name, kind=kind)]
    rows = [
        {
            "host": r.host,
            "kind": r.kind,
            "id": r.id,
            "age": human_age(r.created, now),
            "size": r.size,
            "files": len(r.manifest.files),
            # backup.verify writes verified.json beside the (immutable) manifest.
            "verified": stores[r.host].verified_at(r) is not None,
        }
        for r in refs
    ]
    if json:
        output.emit_json(rows)
        return
    output.table(
        f"Backups in the store ({len(rows)})",
        ["host", "kind", "id", "age", "size", "files", "verified"],
        [
            (*(r[k] for k in ("host", "kind", "id", "age")), human_size(r["size"]), r["files"],
             "yes" if r["verified"] else "no")
            for r in rows
        ],
    )  # fmt: skip
