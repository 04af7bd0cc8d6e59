"""backup.list: what is in the operator's store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from invoke import task

from ..core import output
from ..core.output import human_age, human_size
from ..core.runner import guarded, load, target_hosts

if TYPE_CHECKING:
    from ..core.store import ReadBack

COLUMNS = ["host", "kind", "id", "age", "size", "files", "verified", "read back", "off-site"]


def _read_back_json(seen: ReadBack | None) -> dict[str, object] | None:
    from ..core.manifest import format_utc

    return None if seen is None else {"at": format_utc(seen.at), "ok": seen.ok}


def _read_back_cell(seen: ReadBack | None, now: datetime) -> str:
    if seen is None:
        return "never"
    return f"{human_age(seen.at, now)} ago" + ("" if seen.ok else " FAILED")


@task(name="list", help={"kind": "only this kind: env, units, logs or redis", "json": "as JSON"})
@guarded
def list_(c, kind=None, json=False):
    """Show the backups in the local store: host, kind, id, age, size, verified, and when each
    was last read back by backup.verify, here and off-site."""
    from ..core.store import READ_BACK_PLACES, Store

    hosts = target_hosts(c, load(c), required=False)
    now = datetime.now(UTC)
    stores = {h.name: Store(h.store.path) for h in hosts}
    # backup.verify's read-back log: when each backup was last read back, and where.
    read_backs = {h.name: stores[h.name].read_backs(h.name) for h in hosts}
    refs = [ref for h in hosts for ref in stores[h.name].list(host=h.name, kind=kind)]
    seen = {
        (r.host, r.kind, r.id): [
            read_backs[r.host].get((w, r.kind, r.id)) for w in READ_BACK_PLACES
        ]
        for r in refs
    }
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
            "read_back": {
                w: _read_back_json(rb)
                for w, rb in zip(READ_BACK_PLACES, seen[r.host, r.kind, r.id], strict=True)
            },
        }
        for r in refs
    ]
    if json:
        output.emit_json(rows)
        return
    output.table(
        f"Backups in the store ({len(rows)})",
        COLUMNS,
        [
            (*(r[k] for k in ("host", "kind", "id", "age")), human_size(r["size"]), r["files"],
             "yes" if r["verified"] else "no",
             *(_read_back_cell(rb, now) for rb in seen[(r["host"], r["kind"], r["id"])]))
            for r in rows
        ],
    )  # fmt: skip
