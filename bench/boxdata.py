"""Test data inside the sandbox boxes: made through sandbox.box_exec (root, no SSH),
and every file this run made, or every server-side copy its backups made, removed at the end."""

from __future__ import annotations

import json
import posixpath
import subprocess
import time

from sandbox import box_exec

from .loggen import SOURCE as LOGGEN
from .measure import BenchError
from .settings import FLEET, OWN_BOX, Settings

SCRATCH = "/var/tmp/zachot-bench"
LOGS = "/opt/zachot/logs"
SERVER_BACKUPS = "/opt/zachot/backups"
DAY = 86400.0
# Boxes whose server-side backup dir we may clean; the others are not ours to touch.
OWN_BOXES = FLEET[4]


def run_in(box: str, argv: list[str], *, timeout: float = 600) -> str:
    try:
        done = box_exec(box, argv, timeout=timeout)
    except (RuntimeError, KeyError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{box}: {exc}; is the sandbox up? (invoke sandbox.status)") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise BenchError(f"{box}: `{argv[0]}` failed: {last}")
    return done.stdout


class BoxData:
    """Files this bench run created in boxes, to be removed by cleanup()."""

    def __init__(self, settings: Settings, box: str = OWN_BOX) -> None:
        self.settings = settings
        self.box = box
        self.created: list[str] = []
        self._logs: list[str] | None = None
        self._extra: list[str] | None = None
        self._big: str | None = None
        self._new_logs = 0
        self._backups_before = {b: self._server_copies(b) for b in OWN_BOXES}

    def big_file(self) -> str:
        """One incompressible file, readable by the login user (figure 2)."""
        if self._big is None:
            path = posixpath.join(SCRATCH, "big.bin")
            size = self.settings.big_file
            self.created.append(path)
            script = 'mkdir -p "$1" && head -c "$2" /dev/urandom > "$3" && chmod 644 "$3"'
            run_in(self.box, ["sh", "-c", script, "sh", SCRATCH, str(size), path])
            self._big = path
        return self._big

    def logs(self) -> list[str]:
        """Half plain text, half .gz (logrotate's compressed rotations) (figure 3)."""
        if self._logs is None:
            n, size, now = self.settings.log_files, self.settings.log_file_size, time.time()
            specs = [
                (posixpath.join(LOGS, f"bench-app.log.{i + 1}"), size, "text", now - (i + 1) * DAY)
                for i in range(n)
            ] + [
                (
                    posixpath.join(LOGS, f"bench-app.log.{n + i + 1}.gz"),
                    size,
                    "gz",
                    now - (n + i + 1) * DAY,
                )
                for i in range(n)
            ]
            self._logs = self._write(specs)
        return self._logs

    def memory_extra(self) -> list[str]:
        """More already-compressed rotations, bringing the logs up to settings.memory_total."""
        if self._extra is None:
            missing = max(0, self.settings.memory_total - self.settings.logs_total)
            size = self.settings.log_file_size
            count = -(-missing // size)
            now = time.time()
            specs = [
                (
                    posixpath.join(LOGS, f"bench-old.log.{i + 1}.gz"),
                    size,
                    "random",
                    now - (100 + i) * DAY,
                )
                for i in range(count)
            ]
            self._extra = self._write(specs)
        return self._extra

    def new_log(self) -> str:
        """One new rotated plain-text log, as after a night's logrotate (figure 3b)."""
        self._new_logs += 1
        path = posixpath.join(LOGS, f"bench-app.log.new{self._new_logs}")
        self._write([(path, self.settings.log_file_size, "text", time.time() - 60)])
        return path

    def logs_size(self) -> int:
        out = run_in(self.box, ["du", "-sb", "--apparent-size", LOGS])
        return int(out.split()[0])

    def _write(self, specs: list[tuple[str, int, str, float]]) -> list[str]:
        paths = [s[0] for s in specs]
        self.created.extend(paths)
        owner = "zachot"
        spec_json = json.dumps([[p, size, kind, mtime, owner] for p, size, kind, mtime in specs])
        run_in(self.box, ["python3", "-c", LOGGEN, spec_json], timeout=1800)
        return paths

    def _server_copies(self, box: str) -> set[str]:
        out = run_in(box, ["find", SERVER_BACKUPS, "-maxdepth", "1", "-type", "f"])
        return set(out.split())

    def cleanup(self) -> list[str]:
        """Remove what this run made; returns one line per box saying what went."""
        said: list[str] = []
        if self.created:
            run_in(self.box, ["rm", "-f", "--", *self.created])
            run_in(self.box, ["rm", "-rf", "--", SCRATCH])
            said.append(f"{self.box}: removed {len(self.created)} test files")
        for box, before in self._backups_before.items():
            new = sorted(self._server_copies(box) - before)
            if new:
                run_in(box, ["rm", "-f", "--", *new])
                said.append(f"{box}: removed {len(new)} server-side env copies")
        return said
