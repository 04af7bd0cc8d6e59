"""A backup's manifest: what was saved, from where, and how to check it.

One JSON file per backup (``manifest.json``). This module owns its data,
(de)serialisation and validation; the store decides where it lives. Names and
ids are validated here too, because a manifest read back from disk is input
like any other: a hand-edited or truncated one must never produce a path
outside its backup.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from fabfile.core.errors import StoreError

FORMAT = 1
MANIFEST_NAME = "manifest.json"
KINDS: tuple[str, ...] = ("env", "units", "logs", "redis")

# fullmatch + re.ASCII everywhere: "$" alone accepts a trailing newline and
# "\d" alone accepts non-ASCII digits, both of which would let odd ids through.
ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z(-[0-9]{1,3})?", re.ASCII)
HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
NAME_RE = re.compile(r"[A-Za-z0-9@._+-][A-Za-z0-9@._+ -]*", re.ASCII)
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
MODE_RE = re.compile(r"0?[0-7]{3,4}", re.ASCII)
MAX_NAME = 255  # NAME_MAX on Linux
MAX_HOST = 253  # longest DNS name
# Meta that describes an env file's content: the local store keeps it, the vault does not.
PRIVATE_META = ("keys", "missing_required")


def is_backup_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def is_host_name(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) <= MAX_HOST and HOST_RE.fullmatch(value) is not None
    )


def is_file_name(value: object) -> bool:
    """A single path component a backup may hold (never the manifest itself)."""
    return (
        isinstance(value, str)
        and len(value.encode()) <= MAX_NAME
        and value not in (".", "..", MANIFEST_NAME)
        and NAME_RE.fullmatch(value) is not None
    )


def id_sort_key(backup_id: str) -> tuple[str, int]:
    """Chronological order: the timestamp sorts as text, the collision suffix as a number."""
    stamp, _, suffix = backup_id.partition("-")
    return stamp, int(suffix) if suffix else 0


def format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    """ISO-8601 with an explicit UTC offset; a naive time is refused (ValueError)."""
    moment = datetime.fromisoformat(text)
    if moment.utcoffset() is None or moment.utcoffset().total_seconds() != 0:
        raise ValueError(f"{text!r} is not a UTC time")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class FileRecord:
    name: str
    sha256: str
    size: int
    source: str  # path on the host it came from
    mode: int
    owner: str
    group: str
    mtime: float
    stored_in: str | None = None  # id of the backup that holds the bytes when unchanged
    ciphertext_sha256: str | None = None  # for encrypted files (later)

    def problem(self) -> str | None:
        """Why this record is unusable, or None. Shared by parsing and StagedBackup.add."""
        # One `if` per rule, in order: each message is built only for the record that fails
        # (a long history's scan checks thousands of records).
        name = self.name
        if not is_file_name(name):
            return f"file name {short_repr(name)} is not a plain file name"
        if not _is_sha(self.sha256):
            return f"{name}: sha256 is not 64 lowercase hex digits"
        if not (_is_int(self.size) and self.size >= 0):
            return f"{name}: size must be an int >= 0"
        if not isinstance(self.source, str):
            return f"{name}: source must be a string"
        if not (_is_int(self.mode) and 0 <= self.mode <= 0o7777):
            return f"{name}: bad mode"
        if not isinstance(self.owner, str):
            return f"{name}: owner must be a string"
        if not isinstance(self.group, str):
            return f"{name}: group must be a string"
        if not _is_number(self.mtime):
            return f"{name}: mtime must be a number"
        if not (self.stored_in is None or is_backup_id(self.stored_in)):
            return f"{name}: stored_in is not a backup id"
        if not (self.ciphertext_sha256 is None or _is_sha(self.ciphertext_sha256)):
            return f"{name}: ciphertext_sha256 is not 64 lowercase hex digits"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "size": self.size,
            "source": self.source,
            # Octal text so a person reading the manifest sees "0600", not 384.
            "mode": f"{self.mode:04o}",
            "owner": self.owner,
            "group": self.group,
            "mtime": self.mtime,
            "stored_in": self.stored_in,
            "ciphertext_sha256": self.ciphertext_sha256,
        }

    @classmethod
    def from_dict(cls, data: object) -> FileRecord:
        """Raises ValueError with a short reason; Manifest.from_json adds the file name."""
        if not isinstance(data, dict):
            raise ValueError("a files entry is not an object")
        _check_keys(data, _FILE_REQUIRED, _FILE_OPTIONAL, "files entry")
        mode = data["mode"]
        if not isinstance(mode, str) or MODE_RE.fullmatch(mode) is None:
            raise ValueError(f'{short_repr(data["name"])}: mode must be octal text like "0600"')
        mtime = data["mtime"]
        record = cls(
            **{key: data[key] for key in _FILE_REQUIRED if key not in ("mode", "mtime")},
            mode=int(mode, 8),
            # JSON may give an int mtime; keep the declared type (problem() rejects the rest).
            mtime=float(mtime) if _is_number(mtime) else mtime,
            stored_in=data.get("stored_in"),
            ciphertext_sha256=data.get("ciphertext_sha256"),
        )
        if (problem := record.problem()) is not None:
            raise ValueError(problem)
        return record


_FILE_REQUIRED = ("name", "sha256", "size", "source", "mode", "owner", "group", "mtime")
_FILE_OPTIONAL = ("stored_in", "ciphertext_sha256")
_TOP_REQUIRED = ("format", "id", "host", "kind", "created", "files", "meta")


@dataclass(frozen=True)
class Manifest:
    format: int
    id: str
    host: str
    kind: str
    created: str  # ISO-8601 UTC, e.g. 2026-11-24T15:15:00Z
    files: tuple[FileRecord, ...]
    # Kind-specific and JSON-safe: env key NAMES (never values), deployed commit, ...
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def created_at(self) -> datetime:
        return parse_utc(self.created)

    def file(self, name: str) -> FileRecord | None:
        return next((record for record in self.files if record.name == name), None)

    def problem(self) -> str | None:
        """Why this manifest is unusable, or None."""
        checks = (
            (
                _is_int(self.format) and self.format == FORMAT,
                f"unsupported format {self.format!r} (expected {FORMAT})",
            ),
            (is_backup_id(self.id), f"id {short_repr(self.id)} is not a backup id"),
            (is_host_name(self.host), f"host {short_repr(self.host)} is not a host name"),
            (self.kind in KINDS, f"kind {short_repr(self.kind)} is not one of {', '.join(KINDS)}"),
            (
                _is_utc(self.created),
                f"created {short_repr(self.created)} is not an ISO-8601 UTC time",
            ),
            (isinstance(self.meta, dict), "meta must be an object"),
        )
        found = next((message for ok, message in checks if not ok), None)
        return found or _files_problem(self.files, self.id)

    def offsite(self) -> Manifest:
        """The copy the off-site box gets: enough to check the bytes it holds, nothing more.

        An encrypted file's plaintext sha256 would let whoever reads the vault test guesses
        of a short secret, so its ciphertext hash stands in; env key names stay local."""
        files = tuple(
            replace(r, sha256=r.ciphertext_sha256) if r.ciphertext_sha256 else r for r in self.files
        )
        meta = {k: v for k, v in self.meta.items() if k not in PRIVATE_META}
        return replace(self, files=files, meta=meta)

    def to_json(self) -> str:
        if (problem := self.problem()) is not None:
            raise ValueError(f"refusing to write an invalid manifest: {problem}")
        data = {
            "format": self.format,
            "id": self.id,
            "host": self.host,
            "kind": self.kind,
            "created": self.created,
            "files": [record.to_dict() for record in self.files],
            "meta": self.meta,
        }
        # allow_nan=False: NaN/Infinity are not JSON and other tools would choke on them.
        return json.dumps(data, indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, where: str) -> Manifest:
        """Parse and validate; any defect raises StoreError naming `where`."""
        try:
            return cls._parse(text)
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
            raise StoreError(f"{where}: bad manifest: {_reason(exc)}") from None

    @classmethod
    def _parse(cls, text: str) -> Manifest:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        if not isinstance(data, dict):
            raise ValueError("top level is not an object")
        _check_keys(data, _TOP_REQUIRED, (), "manifest")
        if not isinstance(data["files"], list):
            raise ValueError("files must be a list")
        manifest = cls(
            format=data["format"],
            id=data["id"],
            host=data["host"],
            kind=data["kind"],
            created=data["created"],
            files=tuple(FileRecord.from_dict(entry) for entry in data["files"]),
            meta=data["meta"],
        )
        if (problem := manifest.problem()) is not None:
            raise ValueError(problem)
        return manifest


def _files_problem(files: tuple[FileRecord, ...], own_id: str) -> str | None:
    seen: set[str] = set()
    for record in files:
        if (problem := record.problem()) is not None:
            return problem
        if record.name in seen:
            return f"file {record.name} is listed twice"
        if record.stored_in == own_id:
            return f"{record.name}: stored_in names the backup itself"
        seen.add(record.name)
    return None


def _check_keys(
    data: dict, required: tuple[str, ...], optional: tuple[str, ...], what: str
) -> None:
    missing = [key for key in required if key not in data]
    if missing:
        raise ValueError(f"{what} is missing {', '.join(missing)}")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        # Strict: a new field means a new format number, not a silent addition.
        raise ValueError(f"{what} has unknown field(s) {', '.join(map(short_repr, unknown))}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("a key appears twice")
    return found


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    # Ints are always finite (and math.isfinite overflows on huge ones).
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _is_sha(value: object) -> bool:
    return isinstance(value, str) and SHA256_RE.fullmatch(value) is not None


def _is_utc(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_utc(value)
    except ValueError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON (truncated?): {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def short_repr(value: object, limit: int = 40) -> str:
    """repr() of a value cut to `limit` characters: never echo a huge or hostile value."""
    text = value if isinstance(value, str) else repr(value)
    return repr(text[:limit] + "…") if len(text) > limit else repr(text)
