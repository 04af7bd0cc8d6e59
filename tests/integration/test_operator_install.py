"""An operator's install: `pip install <checkout>` into a fresh venv as a non-root user,
then tasks against the sandbox from a directory outside the checkout.

The user is `nobody` with a private HOME; the Python is the system's (/usr/bin/python3),
not the developer's pyenv. pip sees only a local wheelhouse (--no-index; the dependency
wheels are built once and cached), so the install is offline.
prod8 is only read (status, hosts.list) and backed up (backup.env) into the user's store.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import Fleet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BOX = "prod8"
PYTHON = "/usr/bin/python3"  # the machine's Python, as an operator has it
WHEEL_CACHE = Path("~/.cache/zachot-sandbox/operator-wheels").expanduser()


def wheelhouse() -> Path:
    """Wheels of the runtime dependencies and the build backend, built once per pin set by
    the operator's Python (its markers, e.g. redis's python_full_version, decide the set)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    version = subprocess.run([PYTHON, "--version"], capture_output=True, text=True).stdout
    key = "\n".join([version, *wanted]).encode()
    folder = WHEEL_CACHE / hashlib.sha256(key).hexdigest()[:16]
    if not (folder / "complete").exists():
        builder = folder / "builder"
        subprocess.run([PYTHON, "-m", "venv", str(builder)], check=True, timeout=120)
        pip = [str(builder / "bin" / "pip"), "wheel", "-q", "-w", str(folder / "wheels"), *wanted]
        subprocess.run(pip, check=True, capture_output=True, timeout=600)
        (folder / "complete").touch()
    return folder / "wheels"


class Operator:
    """A non-root user with a private HOME, its own copy of the sandbox's keys, known_hosts
    and inventory (the age identity too), and a store in that HOME."""

    def __init__(self, base: Path, fleet: Fleet) -> None:
        self.user = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        self.base, self.home = base, base / "home"
        self.inventory = self.home / "ops" / "inventory.yml"
        self.store = self.home / "backups"
        data = yaml.safe_load(fleet.inventory.read_text())
        top = data["all"]["vars"]
        (self.home / "ops").mkdir(parents=True)
        for key in ("identity_file", "known_hosts"):
            top[key] = str(self.copy(Path(top[key]), self.home / "ops"))
        top["store"]["path"] = str(self.store)
        age = top["backup"]
        age["age_identity"] = str(self.copy(Path(age["age_identity"]), self.home / "ops"))
        self.inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        for path in [base, *base.rglob("*")]:
            os.chown(path, self.user.pw_uid, self.user.pw_gid, follow_symlinks=False)

    def copy(self, source: Path, folder: Path) -> Path:
        target = folder / source.name
        shutil.copyfile(source, target)
        target.chmod(0o600)
        return target

    def run(
        self, argv: list[str], *, cwd: Path | None = None, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess[str]:
        clean = {
            "HOME": str(self.home),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PIP_CONFIG_FILE": os.devnull,  # nothing from the machine's pip config
            "NO_COLOR": "1",
            **env,
        }
        root = os.geteuid() == 0
        return subprocess.run(
            argv, cwd=cwd or self.home, env=clean, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL,
            user=self.user.pw_uid if root else None, group=self.user.pw_gid if root else None,
            extra_groups=[] if root else None,
        )  # fmt: skip


@pytest.fixture(scope="module")
def operator(fleet: Fleet) -> Iterator[Operator]:
    fleet.claim(BOX)
    wheels = wheelhouse()
    # Not under pytest's tmp_path: that is private to root, and this user must read it.
    base = Path(tempfile.mkdtemp(prefix="zachot-operator-"))
    try:
        shutil.copytree(wheels, base / "wheels")
        checkout = base / "home" / "zachot-ops"  # the operator's clone: sources and pyproject
        shutil.copytree(ROOT / "fabfile", checkout / "fabfile",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        shutil.copy(ROOT / "pyproject.toml", checkout / "pyproject.toml")
        person = Operator(base, fleet)
        base.chmod(0o755)
        made = person.run([PYTHON, "-m", "venv", str(person.home / "venv")])
        assert made.returncode == 0, made.stderr
        pip = person.home / "venv" / "bin" / "pip"
        # --no-compile: bytecode is written at first import instead; it halves the install
        # on a loaded machine (botocore alone is thousands of files).
        install = [str(pip), "install", "-q", "--no-compile", "--no-index", "--find-links"]
        install.append(str(base / "wheels"))
        done = person.run([*install, str(checkout)])
        assert done.returncode == 0, done.stdout + done.stderr
        yield person
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_install_is_owned_by_the_user(operator):
    fab = operator.home / "venv" / "bin" / "fab"
    assert fab.stat().st_uid == operator.user.pw_uid
    site = operator.run([str(operator.home / "venv" / "bin" / "python"), "-c",
                         "import fabfile, sys; print(fabfile.__file__)"])  # fmt: skip
    assert "/site-packages/fabfile/" in site.stdout  # installed, not the checkout


def test_without_an_inventory_the_error_lists_where_it_looked(operator):
    fab = str(operator.home / "venv" / "bin" / "fab")
    done = operator.run([fab, "-H", BOX, "hosts.list"])
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stderr.strip()
    assert len(said.splitlines()) == 1 and "Traceback" not in said
    assert f"{operator.home}/inventory.yml" in said  # ./inventory.yml, from the cwd
    assert f"{operator.home}/.config/zachot/inventory.yml" in said
    assert "site-packages" not in said


def test_tasks_run_from_outside_the_checkout(operator):
    fab = str(operator.home / "venv" / "bin" / "fab")
    elsewhere = operator.home / "ops"
    # ~/.config/zachot/inventory.yml is found with nothing set.
    config = operator.home / ".config" / "zachot"
    operator.run(["mkdir", "-p", str(config)])
    operator.run(["cp", str(operator.inventory), str(config / "inventory.yml")])
    listed = operator.run([fab, "-H", BOX, "hosts.list"], cwd=elsewhere)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert BOX in listed.stdout
    env = {"ZACHOT_INVENTORY": str(operator.inventory)}
    status = operator.run([fab, "-H", BOX, "status"], cwd=elsewhere, **env)
    assert status.returncode == 0, status.stdout + status.stderr
    backup = operator.run([fab, "-H", BOX, "backup.env"], cwd=elsewhere, **env)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    stored = list((operator.store / BOX / "env").iterdir())
    assert stored and all(path.stat().st_uid == operator.user.pw_uid for path in stored)
    assert (operator.store / BOX).stat().st_mode & 0o777 == 0o700
