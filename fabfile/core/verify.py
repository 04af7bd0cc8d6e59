"""Is a backup there, intact and restorable, and is the newest one fresh enough?

Each check is a small function from a Subject (one backup of one host) to a
Verdict, listed in CHECKS. Integrity checks say whether this backup can be
restored: they are what `verify_backup` runs, which restore uses as its gate.
The other checks describe the state of the store (freshness, leftovers) and
run only for the newest backup of a kind, in backup.verify.

Test restores go to a private temporary directory that is removed afterwards;
env values are registered with secrets (masked) and only key names reported.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dotenv.parser import parse_stream

from . import crypto, secrets
from .backups.env import NAME as ENV_NAME
from .backups.redis import RDB_MAGIC
from .backups.units import DROP_IN_SEPARATOR
from .errors import LockHeldError, StoreError, ZachotError
from .lock import StoreLock
from .manifest import KINDS
from .model import Host
from .store import BackupRef, Store

REQUIRED_KINDS = ("env", "units")  # logs and redis are optional: never backed up is fine
CHUNK = 1024 * 1024
ANALYZE_TIMEOUT = 120


class VerifyError(ZachotError):
    """One thing a check found wrong; the check reports it as a problem."""


class VerificationFailed(ZachotError):
    """backup.verify found a problem: exit non-zero for cron and monitoring."""


@dataclass(frozen=True)
class Problem:
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


@dataclass(frozen=True)
class Verdict:
    problems: tuple[str, ...] = ()
    detail: str = ""
    warnings: tuple[str, ...] = ()  # worth saying, not a failure
    note: str = ""  # a word or two for the table, e.g. which parser was used


@dataclass(frozen=True)
class CheckResult:
    name: str
    verdict: Verdict
    integrity: bool

    @property
    def ok(self) -> bool:
        return not self.verdict.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.verdict.detail,
            "note": self.verdict.note,
            "problems": list(self.verdict.problems),
            "warnings": list(self.verdict.warnings),
        }


class Subject:
    """One backup under test, with the helpers checks share (cached hashing, test restore)."""

    def __init__(
        self, store: Store, host: Host, ref: BackupRef, now: datetime, scratch: Path
    ) -> None:
        self.store, self.host, self.ref, self.now, self.scratch = store, host, ref, now, scratch
        self._checked: dict[tuple[str, str], Path] = {}

    def checked(self, ref: BackupRef, name: str) -> Path:
        """Where stored file `name` of `ref` is, once its size and sha256 matched the manifest."""
        key = (ref.id, name)
        if key not in self._checked:
            path = self.store.file_path(ref, name)  # follows stored_in; checks the size
            _check_hash(path, ref, name)
            self._checked[key] = path
        return self._checked[key]

    def can_read(self, name: str) -> bool:
        """False when `name` is encrypted and this machine has no identity to open it."""
        record = crypto.find_record(self.ref, name)
        return not crypto.is_encrypted(record) or self.host.backup.age_identity is not None

    def restore(self, name: str, as_name: str | None = None) -> Path:
        """Write the plaintext of `name` (checked, decrypted) into the scratch dir, 0600."""
        data = crypto.open_backup_file(self.store, self.ref, name, self.host)
        target = self.scratch / (as_name or f"{self.ref.kind}/{name}")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return target


NO_IDENTITY = "encrypted, and backup.age_identity is not set here: not test-restored"


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Subject], Verdict]
    kinds: tuple[str, ...] = KINDS
    integrity: bool = True  # part of verify_backup, restore's gate


# -- integrity checks -------------------------------------------------------------


def check_files(subject: Subject) -> Verdict:
    """Every file is there and readable, and its size and sha256 match the manifest."""
    problems = []
    for record in subject.ref.manifest.files:
        try:
            subject.checked(subject.ref, record.name)
        except ZachotError as exc:
            problems.append(exc.message)
    files = subject.ref.manifest.files
    return Verdict(tuple(problems), f"{len(files)} files, {subject.ref.size} bytes")


def check_env(subject: Subject) -> Verdict:
    """The env file restores, parses with python-dotenv and has the required keys."""
    if not subject.can_read(ENV_NAME):
        return Verdict(detail=NO_IDENTITY, warnings=(f"{ENV_NAME}: {NO_IDENTITY}",), note="sealed")
    data = subject.restore(ENV_NAME).read_bytes()
    required = subject.host.layout.required_env_keys
    summary = secrets.parse_env(data, required)  # registers the values: masked from now on
    problems = [f"line {n} does not parse as KEY=value" for n in unparsable_lines(data)]
    refused, ignored = systemd_env_notes(data)
    problems += refused
    if summary.missing:
        problems.append(f"lacks required keys: {', '.join(summary.missing)}")
    if not summary.keys:
        problems.append("has no keys at all")
    present = [key for key in required if key in summary.keys]
    detail = f"{len(summary.keys)} keys; required present: {', '.join(present) or 'none'}"
    return Verdict(
        tuple(f"{ENV_NAME}: {p}" for p in problems),
        detail,
        tuple(f"{ENV_NAME}: {w}" for w in ignored),
    )


def systemd_env_notes(data: bytes) -> tuple[list[str], list[str]]:
    """(problems, warnings): what systemd's EnvironmentFile= makes of lines python-dotenv
    takes. By line number only, never the text (a line may hold a secret)."""
    problems, warnings = [], []
    if data.startswith(b"\xef\xbb\xbf"):
        warnings.append("starts with a UTF-8 BOM: systemd ignores its first assignment")
    for number, line in enumerate(data.splitlines(), 1):
        stripped = line.strip()
        if b"\0" in line:  # even in a comment
            problems.append(f"line {number} holds a NUL byte: systemd refuses the whole file")
        elif not stripped or stripped[:1] in (b"#", b";"):
            continue
        elif not _is_utf8(line):
            problems.append(f"line {number} is not UTF-8 text: systemd refuses the whole file")
        elif stripped.startswith(b"export "):
            warnings.append(f"line {number}: systemd ignores an assignment starting 'export '")
    return problems, warnings


def unparsable_lines(data: bytes) -> list[int]:
    """Line numbers python-dotenv cannot parse (never their text: it may be a secret)."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    return [b.original.line for b in parse_stream(io.StringIO(text)) if b.error]


def check_units(subject: Subject) -> Verdict:
    """The units and drop-ins restore into a unit directory and parse as unit files."""
    units_dir = subject.scratch / "units"
    mains: list[Path] = []
    names = [record.name.removesuffix(crypto.SUFFIX) for record in subject.ref.manifest.files]
    if names and not subject.can_read(names[0]):
        return Verdict((), f"{len(names)} files", (f"units: {NO_IDENTITY}",))
    for name in names:
        # Drop-ins are stored flat ("x.service.d+override.conf"); systemd wants the directory.
        unit, separator, conf = name.partition(DROP_IN_SEPARATOR)
        restored = subject.restore(name, f"units/{unit}/{conf}" if separator else f"units/{unit}")
        if not separator:
            mains.append(restored)
    problems = [
        f"{unit} is not in this backup" for unit in subject.host.layout.units if unit not in names
    ]
    tool = systemd_analyze()
    if tool is not None:
        errors, warnings = analyze_units(tool, mains, units_dir)
        how, note = "systemd-analyze verify", "systemd-analyze"
    else:
        errors, warnings = [], []
        for path in sorted(units_dir.rglob("*")):
            if path.is_file():
                shown = str(path.relative_to(units_dir))
                found_errors, found_warnings = parse_unit_file(path.read_bytes(), shown)
                errors += found_errors
                warnings += found_warnings
        how, note = "INI parse (no systemd-analyze here)", "INI parse"
    detail = f"{len(mains)} units parsed by {how}"
    return Verdict(tuple(problems + errors), detail, tuple(warnings), note)


def systemd_analyze() -> str | None:
    return shutil.which("systemd-analyze")


def analyze_units(tool: str, units: list[Path], units_dir: Path) -> tuple[list[str], list[str]]:
    if not units:
        return [], []
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C"}
    argv = [tool, "verify", "--man=no", "--generators=no", *map(str, units)]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=ANALYZE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"systemd-analyze verify did not run: {exc}"], []
    said = (done.stdout + done.stderr).replace(f"{units_dir}/", "")
    return classify_analyze(said, done.returncode)


# What systemd-analyze says about this machine rather than the unit: the
# laptop has no /opt/zachot, no service user, no redis unit.
_ENVIRONMENT = re.compile(
    r"is not executable|No such file or directory|not found|Failed to resolve|does not exist",
    re.IGNORECASE,
)
# What means the file itself is damaged or systemd would refuse the unit.
_FATAL = re.compile(
    r"Invalid section header|Assignment outside of section|Missing '='|failed to load|"
    r"Refusing|Bad message",
    re.IGNORECASE,
)


def classify_analyze(said: str, exit_code: int) -> tuple[list[str], list[str]]:
    """(errors, warnings) from `systemd-analyze verify` output; environment notes dropped."""
    errors, warnings, ignored = [], [], 0
    for line in (ln.strip() for ln in said.splitlines()):
        if not line:
            continue
        if _FATAL.search(line):
            errors.append(line)
        elif _ENVIRONMENT.search(line):
            ignored += 1
        else:
            warnings.append(line)
    if exit_code != 0 and not errors and not ignored:
        errors.append(f"systemd-analyze verify exited {exit_code}")
    return errors, warnings


_SECTION = re.compile(r"\[([^\[\]]+)\]")
_ASSIGNMENT = re.compile(r"[A-Za-z0-9_-]+\s*=")


def parse_unit_file(data: bytes, name: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a small INI-style parse: sections, KEY=value, continuations.

    Like systemd, it takes any bytes in a comment (a Latin-1 note is common); any other
    line that is not UTF-8 is an error, as systemd ignores it and refuses the unit."""
    errors, sections, continued = [], [], False
    for number, raw in enumerate(data.splitlines(), 1):
        line = raw.decode("utf-8", "replace").strip()
        was_continued, continued = continued, line.endswith("\\")
        if was_continued or not line or line[0] in "#;":
            continue
        if not _is_utf8(raw):
            errors.append(f"{name}:{number}: not UTF-8 text")
        elif line.startswith("["):
            match = _SECTION.fullmatch(line)
            if match is None:
                errors.append(f"{name}:{number}: Invalid section header")
            else:
                sections.append(match[1])
        elif not _ASSIGNMENT.match(line):
            errors.append(f"{name}:{number}: not a section header or KEY=value")
        elif not sections:
            errors.append(f"{name}:{number}: Assignment outside of section")
    warnings = []
    if name.endswith(".service"):
        if "Service" not in sections:
            errors.append(f"{name}: no [Service] section")
        if "Unit" not in sections:
            warnings.append(f"{name}: no [Unit] section")
    return errors, warnings


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_logs(subject: Subject) -> Verdict:
    """Every index entry's archive is in the store, intact, lists, and holds its member."""
    ref = subject.ref
    index = ref.manifest.meta.get("index")
    if not isinstance(index, list):
        return Verdict(("the manifest has no index of log files",))
    wanted: dict[str, set[str]] = {}
    for entry in index:
        if isinstance(entry, dict) and isinstance(entry.get("archive"), str):
            wanted.setdefault(entry["archive"], set()).add(str(entry.get("member")))
        else:
            return Verdict((f"bad index entry {entry!r:.60}",))
    logs = {r.id: r for r in subject.store.list(ref.host, "logs")} | {ref.id: ref}
    problems: list[str] = []
    warnings: list[str] = []
    for archive_id, members in sorted(wanted.items()):
        holder = logs.get(archive_id)
        name = holder.manifest.meta.get("archive") if holder else None
        if holder is None or not isinstance(name, str):
            problems.append(f"index refers to {archive_id}, which holds no logs archive here")
            continue
        if name.endswith(crypto.SUFFIX) and subject.host.backup.age_identity is None:
            warnings.append(f"{archive_id}/{name}: {NO_IDENTITY}")
            continue
        try:
            listed = list_archive(_plain_archive(subject, holder, name))
        except ZachotError as exc:
            problems.append(exc.message)
            continue
        if lacking := sorted(members - listed):
            problems.append(
                f"{archive_id}/{name} lacks {len(lacking)} indexed files: {', '.join(lacking[:5])}"
            )
    detail = f"{len(index)} files in {len(wanted)} archives listed"
    return Verdict(tuple(problems), detail, tuple(warnings))


def _plain_archive(subject: Subject, holder: BackupRef, name: str) -> Path:
    """The checked archive, decrypted into the scratch dir first when it is a .age file."""
    path = subject.checked(holder, name)
    if not name.endswith(crypto.SUFFIX):
        return path
    plain = subject.scratch / f"logs-{holder.id}-{name.removesuffix(crypto.SUFFIX)}"
    if not plain.exists():
        data = crypto.open_backup_file(subject.store, holder, name, subject.host)
        fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    return plain


def list_archive(path: Path) -> set[str]:
    """Member names of a .tar, .tar.gz or .tar.zst, read to the end (like tar -t)."""
    try:
        if path.name.endswith(".zst"):
            return _list_zstd(path)
        with tarfile.open(path, "r|gz" if path.name.endswith(".gz") else "r|") as tar:
            return {member.name for member in tar}
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise VerifyError(f"{path}: does not list as a tar archive: {exc}") from None


def _list_zstd(path: Path) -> set[str]:
    zstd = shutil.which("zstd")
    if zstd is None:
        raise VerifyError(f"{path}: zstd is needed here to list it; install zstd")
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [zstd, "-dcq", "--", str(path)], stdout=subprocess.PIPE, stderr=errors
        )
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                names = {member.name for member in tar}
            while proc.stdout.read(CHUNK):  # the tail after tar's end blocks
                pass
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            errors.seek(0)
            said = errors.read().decode("utf-8", "replace").strip().splitlines() or [""]
            raise VerifyError(f"{path}: zstd cannot decompress it: {said[-1]}")
    return names


def check_redis(subject: Subject) -> Verdict:
    """Every RDB file in the backup starts like one (the bytes are checked by 'files')."""
    problems, warnings, seen = [], [], 0
    for record in subject.ref.manifest.files:
        name = record.name.removesuffix(crypto.SUFFIX)
        if not name.endswith(".rdb"):
            continue
        seen += 1
        if not subject.can_read(name):
            warnings.append(f"{name}: {NO_IDENTITY}")
            continue
        if crypto.is_encrypted(record):
            head = crypto.open_backup_file(subject.store, subject.ref, name, subject.host)
        else:
            with subject.checked(subject.ref, name).open("rb") as handle:
                head = handle.read(len(RDB_MAGIC))
        if not head.startswith(RDB_MAGIC):
            problems.append(f"{name} is not an RDB file (no REDIS header)")
    if not seen:
        problems.append("no RDB file in this backup")
    return Verdict(tuple(problems), f"{seen} RDB files", tuple(warnings))


# -- checks of the store's state (newest backup only) ------------------------------


def check_age(subject: Subject) -> Verdict:
    """The newest backup is not older than the host's backup.max_age_days."""
    limit = subject.host.backup.max_age_days
    age = subject.now - subject.ref.created
    days = age / timedelta(days=1)
    if age > timedelta(days=limit):
        return Verdict(
            (f"newest is {days:.1f} days old, older than {limit:g} days",), f"{days:.1f}d"
        )
    return Verdict((), f"{days:.1f}d (limit {limit:g}d)")


def check_store(subject: Subject) -> Verdict:
    """Nothing else is wrong in this host's part of the store for this kind."""
    found = subject.store.problems(subject.ref.host, subject.ref.kind)
    return Verdict(tuple(found), f"{len(found)} store problems")


# The checks, in order. To add one, write `def check_x(subject) -> Verdict` and
# list it here; integrity=False for checks that restore should not depend on.
# The off-site check belongs here too, after "store":
#     Check("offsite", check_offsite, integrity=False)
CHECKS: list[Check] = [
    Check("files", check_files),
    Check("env", check_env, kinds=("env",)),
    Check("units", check_units, kinds=("units",)),
    Check("logs", check_logs, kinds=("logs",)),
    Check("redis", check_redis, kinds=("redis",)),
    Check("age", check_age, integrity=False),
    Check("store", check_store, integrity=False),
]


# -- running them -----------------------------------------------------------------


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A private (0700) temporary directory for test restores, always removed."""
    path = Path(tempfile.mkdtemp(prefix="zachot-verify-"))
    try:
        path.chmod(0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_checks(
    store: Store,
    ref: BackupRef,
    host: Host,
    *,
    now: datetime | None = None,
    integrity_only: bool = False,
    checks: list[Check] | None = None,
) -> list[CheckResult]:
    """Every applicable check of one backup; a check that breaks is a failed check."""
    results = []
    with scratch_dir() as scratch:
        subject = Subject(store, host, ref, now or datetime.now(UTC), scratch)
        for check in CHECKS if checks is None else checks:
            if ref.kind not in check.kinds or (integrity_only and not check.integrity):
                continue
            try:
                verdict = check.run(subject)
            except ZachotError as exc:
                verdict = Verdict((exc.message,))
            except OSError as exc:
                verdict = Verdict((f"{exc.filename or check.name}: {exc.strerror or exc}",))
            results.append(CheckResult(check.name, verdict, check.integrity))
    return results


def verify_backup(store: Store, ref: BackupRef, host: Host) -> list[Problem]:
    """Why this backup cannot be trusted for a restore; empty when it can."""
    results = run_checks(store, ref, host, integrity_only=True)
    return [Problem(r.name, message) for r in results for message in r.verdict.problems]


@dataclass(frozen=True)
class KindReport:
    host: str
    kind: str
    newest: BackupRef | None
    results: tuple[CheckResult, ...] = ()
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def status(self) -> str:
        """ok, failed, missing (a required kind never backed up) or absent (optional)."""
        if self.newest is None:
            if not all(r.ok for r in self.results):
                return "failed"  # none listed, but damaged backups are there
            return "missing" if self.kind in REQUIRED_KINDS else "absent"
        return "ok" if all(r.ok for r in self.results) else "failed"

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "missing")

    @property
    def restorable(self) -> bool:
        return self.newest is not None and all(r.ok for r in self.results if r.integrity)

    @property
    def problems(self) -> list[Problem]:
        found = [Problem(r.name, m) for r in self.results for m in r.verdict.problems]
        if self.newest is None and self.kind in REQUIRED_KINDS:
            return [Problem("exists", f"no complete {self.kind} backup in the store"), *found]
        return found

    def as_json(self) -> dict[str, Any]:
        newest = self.newest
        return {
            "host": self.host,
            "kind": self.kind,
            "result": self.status,
            "newest": newest.id if newest else None,
            "created": newest.manifest.created if newest else None,
            "age_seconds": int((self.now - newest.created).total_seconds()) if newest else None,
            "checks": [r.as_json() for r in self.results],
            "problems": [str(p) for p in self.problems],
        }


def verify_kind(
    store: Store, host: Host, kind: str, now: datetime, checks: list[Check] | None = None
) -> KindReport:
    newest = store.latest(host.name, kind)
    if newest is None:
        # Nothing listed; a backup whose manifest is damaged is not listed, but it is a failure.
        found = tuple(store.problems(host.name, kind))
        verdict = Verdict(found, f"{len(found)} store problems")
        results = (CheckResult("store", verdict, integrity=False),) if found else ()
        return KindReport(host.name, kind, None, results, now)
    results = run_checks(store, newest, host, now=now, checks=checks)
    return KindReport(host.name, kind, newest, tuple(results), now)


def verify_host(
    host: Host, kinds: tuple[str, ...] = KINDS, *, now: datetime | None = None
) -> list[KindReport]:
    """Verify the newest backup of each kind, and record the outcome in the store.

    Holds the store lock, so no backup or prune changes what is being read; a
    backup whose integrity checks pass is marked verified, one that fails is
    unmarked (a flipped byte must not keep an old "verified").
    """
    store = Store(host.store.path)
    moment = now or datetime.now(UTC)
    lock: StoreLock = store.lock(timeout=host.store.lock_timeout, purpose="backup.verify")
    try:
        lock.acquire()
    except LockHeldError as exc:
        raise LockHeldError(f"{host.name}: cannot verify now: {exc.message}") from None
    try:
        reports = [verify_kind(store, host, kind, moment) for kind in kinds]
        for report in reports:
            if report.newest is None:
                continue
            if report.restorable:
                passed = [r.name for r in report.results if r.integrity]
                store.mark_verified(report.newest, moment, passed)
            else:
                store.unmark_verified(report.newest)
    finally:
        lock.release()
    return reports


def _check_hash(path: Path, ref: BackupRef, name: str) -> None:
    """Read the stored bytes once and compare them with the manifest (ciphertext if sealed)."""
    record = ref.manifest.file(name)
    if record is None:
        raise StoreError(f"{ref.host}/{ref.kind}/{ref.id} has no file {name}")
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("rb") as src:
            while block := src.read(CHUNK):
                digest.update(block)
                size += len(block)
    except OSError as exc:
        raise VerifyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    expected = crypto.stored_sha256(record)
    if size != record.size or digest.hexdigest() != expected:
        raise VerifyError(
            f"{path}: does not match the manifest ({size} bytes, sha256 "
            f"{digest.hexdigest()[:12]}…; expected {record.size} bytes, {expected[:12]}…)"
        )
