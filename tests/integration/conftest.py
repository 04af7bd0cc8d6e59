"""Fleet fixture for the integration tier: real Debian boxes from the sandbox package.

The fleet comes up once per session (or a running one is reused) and is torn down at the
end only if this session brought it up; ZACHOT_SANDBOX_KEEP=1 keeps it either way.
Where the sandbox cannot run, tests skip loudly, except under CI=true, where they fail:
a green run with zero integration tests would be a false green.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import yaml

from sandbox import fleet as fleet_mod
from sandbox import preflight
from sandbox import s3 as s3server
from sandbox.box import box_exec
from sandbox.config import API_PORT, INVENTORY, Paths
from sandbox.state import load_state, recorded_specs

ROOT = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).parent / "fab"
_not_run: list[str] = []  # why the fleet could not come up, for the loud closing line
# Modules break their own boxes (prod2..prod13), so one module's damage never meets another.
EXTRA_PROD = 12


def pytest_terminal_summary(terminalreporter) -> None:
    for reason in dict.fromkeys(_not_run):
        terminalreporter.section("INTEGRATION TIER NOT RUN", sep="!", red=True, bold=True)
        terminalreporter.line(reason, red=True, bold=True)


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


@dataclass
class Fleet:
    inventory: Path
    known_hosts: Path
    key: Path
    addresses: dict[str, str]
    paths: Paths = field(repr=False)

    def exec(
        self, box: str, argv: list[str], timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Root inside the box via nsenter: never through the code under test."""
        return box_exec(box, argv, timeout=timeout)

    def sh(self, box: str, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.exec(box, ["/bin/sh", "-c", script], timeout=timeout)

    def reset(self, box: str) -> None:
        fleet_mod.reset(box, paths=self.paths, log=lambda _m: None)

    def claim(self, box: str) -> None:
        """A box a module uses as found: reset only if an earlier run left it unhealthy."""
        spec = next(s for s in recorded_specs(self.paths) if s.name == box)
        if not (fleet_mod.services_active(self.paths, spec) and fleet_mod.health(spec)):
            self.reset(box)

    def fab(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """The real `fab` CLI against the sandbox inventory, as an operator runs it."""
        process = self.fab_started(*args)
        stdout, stderr = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def without_wheelhouse(self, tmp: Path) -> Fleet:
        """This fleet with a copy of its inventory that names no restore.wheelhouse: pip on
        a box then has no package source (the boxes have no internet)."""
        data = yaml.safe_load(self.inventory.read_text())
        data["all"]["vars"].pop("restore", None)
        (tmp / "inventory.yml").write_text(yaml.safe_dump(data, sort_keys=False))
        return replace(self, inventory=tmp / "inventory.yml")

    def fab_started(self, *args: str) -> subprocess.Popen[str]:
        """The same, started in the background (for runs that overlap)."""
        env = {**os.environ, "ZACHOT_INVENTORY": str(self.inventory)}
        return subprocess.Popen(
            [str(FAB), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def job_processed(self, box: str, timeout: float = 30) -> bool:
        """Enqueue a job with the app's own actor and wait for the worker to record it."""
        job = f"it-{uuid.uuid4().hex[:8]}"
        env_file = "/opt/zachot/envs/prod/etc/zachot.env"
        enqueue = (
            f"cd /opt/zachot/repo && set -a && . {env_file} && set +a && "
            "PYTHONDONTWRITEBYTECODE=1 runuser -u zachot -- /opt/zachot/envs/prod/bin/python -c "
            f"\"from zachot.tasks import record_job; record_job.send('{job}')\""
        )
        if self.sh(box, enqueue).returncode != 0:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            said = self.exec(box, ["redis-cli", "SISMEMBER", "zachot:done", job]).stdout
            if said.strip() == "1":
                return True
            time.sleep(0.3)
        return False

    def health(self, box: str) -> tuple[int | None, dict]:
        """GET /health from the operator side, as a load balancer would: status and body,
        or (None, {}) when nothing answers."""
        url = f"http://{self.addresses[box]}:{API_PORT}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read())
            except ValueError:
                return exc.code, {}
        except OSError:
            return None, {}

    def ssh_argv(self, box: str, user: str = "ops") -> list[str]:
        """OpenSSH client argv that logs in as the operator, checking the recorded host key."""
        return ["ssh", *fleet_mod.ssh_base(self.paths), f"{user}@{self.addresses[box]}"]


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    blockers = preflight.problems()
    if blockers:
        reason = "sandbox fleet cannot run here: " + "; ".join(blockers)
        _not_run.append(reason)
        if _truthy("CI"):
            pytest.fail(f"{reason} (CI=true: refusing to skip the integration tier)", pytrace=False)
        pytest.skip(reason)
    paths = Paths()
    started = not fleet_mod.is_up(paths)
    # Idempotent and about a second when already up; repairs a half-up fleet too.
    # A fleet someone brought up with more extras keeps them; fewer is never enough.
    extra_prod = max(EXTRA_PROD, int(load_state(paths).get("extra_prod", 0)))
    # Modules reset or claim the boxes they use, so a box someone else is breaking on
    # purpose right now is left alone.
    fleet_mod.up(extra_prod=extra_prod, paths=paths)
    yield Fleet(
        inventory=INVENTORY,
        known_hosts=paths.known_hosts,
        key=paths.key,
        addresses={s.name: s.address for s in recorded_specs(paths)},
        paths=paths,
    )
    if started and not _truthy("ZACHOT_SANDBOX_KEEP"):
        fleet_mod.down(paths, log=lambda _m: None)


@pytest.fixture
def s3(tmp_path, monkeypatch) -> Iterator[s3server.S3Server]:
    """A fresh `rclone serve s3` for one test, its keys in the environment fab inherits."""
    state = tmp_path / "s3"
    state.mkdir()
    server = s3server.start(state)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)  # fab's subprocesses inherit them
    yield server
    s3server.stop(state)
