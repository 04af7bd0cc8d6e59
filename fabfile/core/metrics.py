"""A Prometheus textfile for node_exporter's textfile collector, from the store's own record.

Names follow the Prometheus naming guide: a `zachot_backup_` prefix, base units (seconds,
bytes) in the name, timestamps as Unix seconds, results as 0/1 gauges. The file is written
to a temp name in the same directory and renamed, so the collector never reads half a file.
It holds times, sizes and names only: no secret, no log line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import atomic
from .drill import last as last_drill
from .errors import ZachotError
from .manifest import KINDS, id_sort_key
from .model import Host
from .offsite import read_index
from .offsite_backend import has_offsite, open_offsite
from .routine import Record
from .store import Store

PREFIX = "zachot_backup_"
HELP = {
    "last_success_timestamp_seconds": "When the newest backup of this host and kind was made.",
    "last_size_bytes": "Bytes the newest backup of this host and kind restores.",
    "last_verified": "1 if backup.verify has passed the newest backup of this host and kind.",
    "offsite_newest_age_seconds": "Age of the newest complete off-site copy of this host.",
    "offsite_up": "1 if the off-site box answered when these metrics were written.",
    "drill_last_timestamp_seconds": "When the last recovery drill of this host finished.",
    "drill_last_rto_seconds": "The measured RTO of the last recovery drill of this host.",
    "drill_last_success": "1 if the last recovery drill of this host passed.",
    "routine_last_run_timestamp_seconds": "When the last backup.routine ended.",
    "routine_last_duration_seconds": "How long the last backup.routine took.",
    "routine_last_exit_code": "The exit code of the last backup.routine (0: success).",
    "routine_last_success": "1 if the last backup.routine succeeded.",
    "routine_last_success_timestamp_seconds": "When backup.routine last succeeded.",
    "routine_step_duration_seconds": "How long each step of the last backup.routine took.",
    "routine_step_success": "1 if the step succeeded in the last backup.routine (0: failed "
    "or skipped).",
}


@dataclass(frozen=True)
class Sample:
    name: str  # without the prefix; a key of HELP
    labels: tuple[tuple[str, str], ...]
    value: float


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(samples: Sequence[Sample]) -> str:
    """The exposition text: # HELP and # TYPE once per metric, then its samples."""
    lines: list[str] = []
    for name in HELP:
        mine = [s for s in samples if s.name == name]
        if not mine:
            continue
        lines += [f"# HELP {PREFIX}{name} {HELP[name]}", f"# TYPE {PREFIX}{name} gauge"]
        for s in mine:
            labels = ",".join(f'{k}="{_label(v)}"' for k, v in s.labels)
            lines.append(f"{PREFIX}{name}{{{labels}}} {s.value:.17g}" if labels
                         else f"{PREFIX}{name} {s.value:.17g}")  # fmt: skip
    return "\n".join(lines) + "\n"


def store_samples(host: Host) -> list[Sample]:
    store = Store(host.store.path)
    samples = []
    for kind in KINDS:
        ref = store.latest(host.name, kind)
        if ref is None:
            continue
        labels = (("host", host.name), ("kind", kind))
        samples += [
            Sample("last_success_timestamp_seconds", labels, ref.created.timestamp()),
            Sample("last_size_bytes", labels, float(ref.size)),
            Sample("last_verified", labels, float(store.verified_at(ref) is not None)),
        ]
    return samples


def drill_samples(host: Host) -> list[Sample]:
    drill = last_drill(Store(host.store.path), host.name)
    if drill is None:
        return []
    labels = (("host", host.name),)
    samples = [
        Sample("drill_last_timestamp_seconds", labels, drill.finished.timestamp()),
        Sample("drill_last_success", labels, float(drill.passed)),
    ]
    try:
        report = json.loads(drill.path.with_suffix(".json").read_bytes()[: 1024 * 1024])
        samples.append(Sample("drill_last_rto_seconds", labels, float(report["total"]["seconds"])))
    except (OSError, ValueError, TypeError, KeyError):
        pass  # an old or damaged report: its time and result still count
    return samples


def _id_time(backup_id: str) -> datetime:
    return datetime.strptime(id_sort_key(backup_id)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def offsite_samples(hosts: Sequence[Host], find: Callable[[str], Host], now: datetime
                    ) -> list[Sample]:  # fmt: skip
    """The newest complete off-site copy per host, from the vault's index: one read a host."""
    samples = []
    for host in hosts:
        if not has_offsite(host):
            continue
        labels = (("host", host.name),)
        try:
            with open_offsite(host, find) as vault:
                index = read_index(vault, host)
        except ZachotError:
            samples.append(Sample("offsite_up", labels, 0.0))
            continue
        samples.append(Sample("offsite_up", labels, 1.0))
        ids = [backup_id for (_kind, backup_id) in index.backups]
        if ids:
            newest = max(ids, key=id_sort_key)
            age = (now - _id_time(newest)).total_seconds()
            samples.append(Sample("offsite_newest_age_seconds", labels, max(age, 0.0)))
    return samples


def routine_samples(record: Record) -> list[Sample]:
    run, good = record.last, record.last_success
    samples = []
    if good is not None and good.ended is not None:
        samples.append(Sample("routine_last_success_timestamp_seconds", (),
                              good.ended.timestamp()))  # fmt: skip
    if run is None or run.ended is None or run.exit_code is None:
        return samples
    samples += [
        Sample("routine_last_run_timestamp_seconds", (), run.ended.timestamp()),
        Sample("routine_last_duration_seconds", (), float(run.seconds or 0.0)),
        Sample("routine_last_exit_code", (), float(run.exit_code)),
        Sample("routine_last_success", (), float(run.exit_code == 0)),
    ]
    for step in run.steps:
        labels = (("step", step.name),)
        samples += [
            Sample("routine_step_duration_seconds", labels, step.seconds),
            Sample("routine_step_success", labels, float(step.ok)),
        ]
    return samples


def collect(hosts: Sequence[Host], find: Callable[[str], Host], record: Record,
            now: datetime) -> list[Sample]:  # fmt: skip
    samples = [s for h in hosts for s in store_samples(h)]
    samples += offsite_samples(hosts, find, now)
    samples += [s for h in hosts for s in drill_samples(h)]
    return samples + routine_samples(record)


def write(target: Path, text: str) -> None:
    """Temp name in the same directory, then rename: the collector sees old or new, whole
    (it reads only *.prom, so the temp name is skipped). 0644: node_exporter runs as another
    user, and the file holds nothing secret."""
    target = target.expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_file(target, text.encode(), mode=0o644)
