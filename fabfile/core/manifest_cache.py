"""The store's cache of parsed manifests: <root>/<host>/manifests.cache.json (0600).

A long history's listing (status, replicate, prune, backup.list) read, parsed and validated
every manifest on each run: about half a second of CPU for 1,600 backups, most of a
replicate with nothing to send. A complete backup's manifest never changes, so its parsed
form is kept beside the manifest file's stat, as git's index keeps a file's: device, inode,
size, mtime and ctime (which no tool can set back). A manifest rewritten, replaced or
touched no longer matches and is read and validated again.

Only a cache: unreadable, too large or of another version, it is ignored and rewritten.
backup.verify's store check does not use it (it is there to notice a damaged manifest).
"""

from __future__ import annotations

import json
import os
from dataclasses import astuple
from pathlib import Path

from . import atomic
from .manifest import FileRecord, Manifest

CACHE_NAME = "manifests.cache.json"
VERSION = 1
MAX_CACHE_BYTES = 256 * 1024 * 1024

# (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) of a manifest file.
Stamp = tuple[int, int, int, int, int]


def stamp_of(info: os.stat_result) -> Stamp:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class ManifestCache:
    """One host's parsed manifests by "kind/id": (stamp, sha256 of the bytes, manifest)."""

    def __init__(self, host_dir: Path) -> None:
        self.path = host_dir / CACHE_NAME
        self._rows = _load(self.path)
        self._built: dict[str, Manifest] = {}  # rows made objects this run, by key
        self._seen: set[str] = set()
        self._changed = False

    def start(self) -> None:
        """A new scan: what it meets decides which rows save() keeps."""
        self._seen = set()

    def get(self, kind: str, backup_id: str, stamp: Stamp) -> tuple[Manifest, str] | None:
        """The manifest and its bytes' sha256 when the file still has `stamp`, else None."""
        key = f"{kind}/{backup_id}"
        self._seen.add(key)
        row = self._rows.get(key)
        if row is None or tuple(row[0]) != stamp:
            return None
        manifest = self._built.get(key)
        if manifest is None:
            try:
                manifest = self._built[key] = _manifest(row[2])
            except (TypeError, ValueError, IndexError):  # a damaged row: read the file again
                return None
        return manifest, row[1]

    def put(self, kind: str, backup_id: str, stamp: Stamp, manifest: Manifest, sha256: str) -> None:
        """Remember a manifest just read and validated."""
        key = f"{kind}/{backup_id}"
        self._seen.add(key)
        self._rows[key] = [list(stamp), sha256, _row(manifest)]
        self._built[key] = manifest
        self._changed = True

    def save(self, kinds: tuple[str, ...]) -> None:
        """Write the cache when it changed; rows of `kinds` (whole scans) not met are gone."""
        gone = [key for key in self._rows if key.split("/")[0] in kinds and key not in self._seen]
        for key in gone:
            del self._rows[key]
        if not (self._changed or gone):
            return
        data = json.dumps({"version": VERSION, "manifests": self._rows}, separators=(",", ":"))
        try:
            atomic.write_file(self.path, data.encode())
        except OSError:
            return  # only a cache (or no host directory yet): the next listing reads again
        self._changed = False


def _load(path: Path) -> dict[str, list]:
    try:
        data = atomic.read_json(path, MAX_CACHE_BYTES)
        if data["version"] != VERSION or not isinstance(data["manifests"], dict):
            return {}
        return data["manifests"]
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def _row(manifest: Manifest) -> list:
    m = manifest
    files = [list(astuple(record)) for record in m.files]
    return [m.format, m.id, m.host, m.kind, m.created, files, m.meta]


def _manifest(row: list) -> Manifest:
    format_, backup_id, host, kind, created, files, meta = row
    records = tuple(FileRecord(*fields) for fields in files)
    return Manifest(format_, backup_id, host, kind, created, records, meta)
