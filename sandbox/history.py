"""A store with history: a year or two of real-looking backups of one host, local and off-site.

Running 730 real backups would take hours, so one REAL backup of each kind is taken first
(the project's own `fab`, into a scratch store, encrypted exactly as the inventory says),
then cloned back in time: new ids and `created` times, the same bytes. The cadence is a
cron's: env and units daily, logs weekly, Redis monthly. Env and units change now and then
(every CHANGE_EVERY days); in between their files are references (`stored_in`) to the last
changed copy, as `backup.env` records an unchanged file. Every manifest goes through
Manifest.to_json, so it is valid by construction.

The off-site copy is the same history as `backup.replicate` leaves it (each backup's own
bytes and its off-site manifest), sent in bulk: one tar stream into the vault box, unpacked
there as the vault user, so it owns its files as after an SFTP upload.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shlex
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from fabfile.core import crypto
from fabfile.core.inventory import load_inventory
from fabfile.core.manifest import MANIFEST_NAME, Manifest, format_utc
from fabfile.core.model import Host
from fabfile.core.store import BackupRef, Store
from sandbox import box
from sandbox.config import Paths
from sandbox.state import recorded_specs

FAB = Path(sys.executable).parent / "fab"
VAULT_ROOT = "/srv/vault/backups"  # the vault user's SFTP home, seen from inside the box
VAULT_USER = "vault"
CHANGE_EVERY = {"env": 30, "units": 90}  # days between content changes; references between
EVERY = {"env": 1, "units": 1, "logs": 7, "redis": 30}  # days between backups of a kind
TEMPLATE_TASKS = (("backup.all", "--logs"), ("backup.redis", "--yes"))


@dataclass
class History:
    host: str
    store: Path
    offsite_dir: str | None
    written: dict[str, int] = field(default_factory=dict)  # kind -> backups added locally
    offsite: dict[str, int] = field(default_factory=dict)  # kind -> backups added off-site
    skipped_offsite: dict[str, str] = field(default_factory=dict)  # kind -> why not

    def summary(self) -> str:
        local = ", ".join(f"{n} {k}" for k, n in self.written.items())
        remote = ", ".join(f"{n} {k}" for k, n in self.offsite.items()) or "nothing"
        where = f"{VAULT_ROOT}/{self.offsite_dir}" if self.offsite_dir else "no off-site box"
        skipped = "".join(f"; {k} not off-site: {why}" for k, why in self.skipped_offsite.items())
        return f"{self.host}: {local} into {self.store}; off-site ({where}): {remote}{skipped}"


def schedule(days: int, now: datetime, seed: int = 12) -> list[tuple[str, datetime]]:
    """(kind, moment) of every backup in the `days` before `now`, oldest first. The nightly
    run lands at a jittered time after 02:00, as a cron with a random delay would; last
    night's run took every kind, so the newest of each is fresh (verify checks ages)."""
    rng = random.Random(seed)
    start = (now - timedelta(days=days)).replace(hour=2, minute=0, second=0, microsecond=0)
    plan = []
    for day in range(days):
        night = start + timedelta(days=day)
        for kind, every in EVERY.items():
            moment = night + timedelta(seconds=rng.randrange(3600))
            if (days - 1 - day) % every == 0 and moment < now:
                plan.append((kind, moment))
    return sorted(plan, key=lambda item: item[1])


def clone(template: Manifest, backup_id: str, moment: datetime, holder: str | None) -> Manifest:
    """The template as taken at `moment`; with a holder, its files are references to it."""
    files = tuple(replace(r, stored_in=holder) for r in template.files)
    meta = dict(template.meta)
    if isinstance(meta.get("index"), list):  # logs: every member is in this backup's archive
        meta["index"] = [{**entry, "archive": backup_id} for entry in meta["index"]]
    return replace(template, id=backup_id, created=format_utc(moment), files=files, meta=meta)


def plan_manifests(
    templates: dict[str, BackupRef], days: int, now: datetime
) -> list[tuple[Manifest, BackupRef]]:
    """Every history backup's manifest with the template whose bytes it holds."""
    out: list[tuple[Manifest, BackupRef]] = []
    holder: dict[str, tuple[str, datetime]] = {}
    taken: set[tuple[str, str]] = set()
    for kind, moment in schedule(days, now):
        if kind not in templates:
            continue
        backup_id = moment.strftime("%Y%m%dT%H%M%SZ")
        if (kind, backup_id) in taken:
            continue
        taken.add((kind, backup_id))
        last = holder.get(kind)
        change = CHANGE_EVERY.get(kind)
        fresh = last is None or change is None or (moment - last[1]).days >= change
        if fresh:
            holder[kind] = (backup_id, moment)
        ref, held_by = templates[kind], None if fresh else holder[kind][0]
        out.append((clone(ref.manifest, backup_id, moment, held_by), ref))
    return out


# -- the real templates ---------------------------------------------------------------------


def scratch_inventory(source: Path, store: Path, into: Path) -> Path:
    """A copy of the inventory writing into `store`, with no off-site copy."""
    data = yaml.safe_load(source.read_text())
    settings = data["all"]["vars"]
    settings["store"] = {**settings.get("store", {}), "path": str(store)}
    settings.get("backup", {}).pop("offsite_host", None)
    into.write_text(yaml.safe_dump(data, sort_keys=False))
    return into


def take_templates(inventory: Path, host: str, scratch: Path) -> dict[str, BackupRef]:
    """One real backup of each kind, taken now by the project's own tasks."""
    store = scratch / "store"
    scratch_inv = scratch_inventory(inventory, store, scratch / "inventory.yml")
    env = {**os.environ, "ZACHOT_INVENTORY": str(scratch_inv)}
    for task in TEMPLATE_TASKS:
        done = subprocess.run(
            [str(FAB), "-H", host, *task], env=env, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
            raise RuntimeError(f"fab -H {host} {' '.join(task)} failed: {' '.join(last)}")
    templates = {}
    for kind in EVERY:
        ref = Store(store).latest(host, kind)
        if ref is None:
            raise RuntimeError(f"no {kind} backup of {host} after {TEMPLATE_TASKS}")
        templates[kind] = ref
    return templates


# -- writing --------------------------------------------------------------------------------


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def write_local(store: Store, manifest: Manifest, template: BackupRef) -> bool:
    """One backup into the store; False when that id is already there."""
    target = store.root / manifest.host / manifest.kind / manifest.id
    if target.exists():
        return False
    staging = target.with_name(f".staging-{manifest.id}-{os.urandom(8).hex()}")
    _private_dir(staging)
    for record in manifest.files:
        if record.stored_in is None:
            _write(staging / record.name, (template.path / record.name).read_bytes())
    _write(staging / MANIFEST_NAME, manifest.to_json().encode())
    os.rename(staging, target)  # complete exactly when named by its id, as the store's own
    return True


def offsite_members(manifest: Manifest, template: BackupRef) -> Iterator[tuple[str, bytes]]:
    """(path under the off-site dir, bytes) of one backup as backup.replicate leaves it."""
    base = f"{manifest.host}/{manifest.kind}/{manifest.id}"
    for record in manifest.files:
        if record.stored_in is None:
            yield f"{base}/{record.name}", (template.path / record.name).read_bytes()
    yield f"{base}/{MANIFEST_NAME}", manifest.offsite().to_json().encode()


def offsite_refused(host: Host, template: BackupRef) -> str | None:
    """Why this kind stays local (replicate's own rule: plain only when offsite_plain says)."""
    plain = not all(crypto.is_encrypted(r) for r in template.manifest.files)
    if plain and template.kind not in host.backup.offsite_plain:
        return "plain (not age-encrypted), and backup.offsite_plain does not list it"
    return None


def tar_stream(members: list[tuple[str, bytes]], top: str) -> bytes:
    """A tar of private dirs (0700) and files (0600) under `top`."""
    buffer = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            parts = f"{top}/{name}".split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in dirs:
                    dirs.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o700
                    tar.addfile(info)
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def box_exec_bytes(name: str, argv: list[str], data: bytes, timeout: float = 600) -> None:
    """box_exec with bytes on stdin (a tar, a .deb); raises RuntimeError when argv fails."""
    paths = Paths()
    spec = next((s for s in recorded_specs(paths) if s.name == name), None)
    leader = box.leader_pid(paths, spec) if spec else None
    if leader is None:
        raise RuntimeError(f"box {name} is not running")
    done = subprocess.run(
        ["nsenter", f"--target={leader}", "--all", "--", *box.BOX_ENV, *argv],
        input=data,
        capture_output=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{name}: {shlex.join(argv)} failed: {why}")


def send_to_vault(vault: str, payload: bytes) -> None:
    """Unpack the tar in the vault's SFTP home as the vault user (root never writes there)."""
    argv = ["runuser", "-u", VAULT_USER, "--", "tar", "-x", "-p", "-C", VAULT_ROOT, "-f", "-"]
    box_exec_bytes(vault, argv, payload)


def write_history(
    host: Host,
    target: Store,
    templates: dict[str, BackupRef],
    days: int,
    now: datetime,
    offsite_dir: str | None,
) -> tuple[History, list[tuple[str, bytes]]]:
    """The history into the local store; returns it and the off-site copy's tar members."""
    history = History(host.name, target.root, offsite_dir)
    members: list[tuple[str, bytes]] = []
    with target.lock(timeout=60, purpose="sandbox.history"):
        for manifest, template in plan_manifests(templates, days, now):
            if write_local(target, manifest, template):
                history.written[manifest.kind] = history.written.get(manifest.kind, 0) + 1
            refused = offsite_refused(host, template)
            if refused:
                history.skipped_offsite[manifest.kind] = refused
            elif offsite_dir:
                members += offsite_members(manifest, template)
                history.offsite[manifest.kind] = history.offsite.get(manifest.kind, 0) + 1
    return history, members


def generate(
    inventory: Path,
    host_name: str,
    days: int,
    *,
    store: Path | None = None,
    offsite_dir: str | None = None,
    now: datetime | None = None,
) -> History:
    """Write `days` of history for host_name into the store and onto its off-site box."""
    host = load_inventory(inventory).host(host_name)
    offsite_dir = (offsite_dir or host.backup.offsite_dir) if host.backup.offsite_host else None
    target = Store(store or host.store.path)
    with tempfile.TemporaryDirectory(prefix="zachot-history-") as scratch:
        templates = take_templates(inventory, host_name, Path(scratch))
        # The templates were taken just now; the history ends the night before.
        history, members = write_history(
            host, target, templates, days, now or datetime.now(UTC), offsite_dir
        )
    if offsite_dir and members:
        send_to_vault(host.backup.offsite_host, tar_stream(members, offsite_dir))
    return history


def remove_offsite(vault: str, offsite_dir: str) -> None:
    """Remove a generated off-site directory (tests and benchmarks clean up with this)."""
    if "/" in offsite_dir or offsite_dir in ("", ".", ".."):
        raise ValueError(f"{offsite_dir!r} is not a directory name")
    with contextlib.suppress(KeyError):
        box.box_exec(vault, ["rm", "-rf", "--", f"{VAULT_ROOT}/{offsite_dir}"])
