"""Drill reports in the store: <store>/<source>/drills/<id>.md and <id>.json, newest last.

The JSON is written last, so a drill listed by its JSON has its markdown too.
Both pass through secrets.mask on the way to disk, like everything printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..manifest import format_utc, id_sort_key, is_backup_id, parse_utc
from ..secrets import mask
from ..store import Store
from .report import Drill

MAX_REPORT = 4 * 1024 * 1024  # a drill report is a few KiB; refuse to read a runaway file


@dataclass(frozen=True)
class LastDrill:
    source: str
    id: str
    target: str
    finished: datetime
    passed: bool
    path: Path  # the markdown report

    def as_json(self) -> dict[str, object]:
        return {
            "drill": True,
            "host": self.source,
            "id": self.id,
            "target": self.target,
            "date": format_utc(self.finished),
            "pass": self.passed,
            "report": str(self.path),
        }


def free_id(store: Store, source: str, wanted: str) -> str:
    """`wanted`, or wanted-N when a drill of the same second is on record."""
    folder = store.drills_dir(source)
    for candidate in (wanted, *(f"{wanted}-{n}" for n in range(1, 1000))):
        if (
            not (folder / f"{candidate}.json").exists()
            and not (folder / f"{candidate}.md").exists()
        ):
            return candidate
    raise FileExistsError(f"{folder}: too many drills stamped {wanted}")


def save(store: Store, drill: Drill) -> tuple[Path, Path]:
    """Write the markdown, then the JSON; returns both paths."""
    md = store.write_drill_file(drill.source, f"{drill.id}.md", mask(drill.markdown()))
    doc = json.dumps(drill.as_json(), indent=2, sort_keys=True, ensure_ascii=False)
    js = store.write_drill_file(drill.source, f"{drill.id}.json", mask(doc) + "\n")
    return md, js


def last(store: Store, source: str) -> LastDrill | None:
    """The newest readable drill report of `source`; None when there is none."""
    folder = store.drills_dir(source)
    try:
        found = [p for p in folder.iterdir() if p.suffix == ".json" and is_backup_id(p.stem)]
    except (FileNotFoundError, NotADirectoryError):
        return None
    for path in sorted(found, key=lambda p: id_sort_key(p.stem), reverse=True):
        try:
            with path.open("rb") as handle:
                data = json.loads(handle.read(MAX_REPORT))
            return LastDrill(
                source,
                path.stem,
                str(data["target"]),
                parse_utc(data["finished"]),
                data["pass"] is True,
                path.with_suffix(".md"),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # damaged or hand-edited: the one before it still says something
    return None
