"""Every command line in the README's ```sh blocks, run as written against the sandbox.

The lines run in README order (the order the README tells the story in: back up prod,
rebuild new-box from it, ...) in one lab: a fresh store, a private off-site directory on
the vault, and an inventory written by sandbox/inventory.py for prod, new-box and vault
alone, as `sandbox.up` writes it (so `replaces: prod` and the wheelhouse are there).
prod and new-box are reset before and after. A line runs in bash from the checkout with
.venv/bin first on PATH and stdin on a terminal that answers "y", as an operator at a
terminal would. It must exit 0, or the code its own comment documents (`# ... exit 1`).

A line that cannot run here goes in EXCLUDED with the reason; a README line that is
neither run nor excluded cannot exist (every line is one or the other), and an exclusion
that matches no README line fails, so the table stays small and true.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sandbox.inventory import inventory_data
from sandbox.state import recorded_specs
from tests.integration.conftest import ROOT
from tests.integration.faults.lab import VAULT, VAULT_ROOT

pytestmark = pytest.mark.integration

README = ROOT / "README.md"
BOXES = ("prod", "new-box", "vault")  # the README's host names are the sandbox's own
RESET = ("prod", "new-box")

# Prefix of a README line -> why it does not run here. Keep it short.
EXCLUDED: dict[str, str] = {
    "./dev ": "the developer wrapper: it (re)builds the venv, boots or tears down the fleet, "
    "or runs the test tiers and benchmarks this test is part of",
    "python3 -m venv ": "the operator install: test_operator_install.py runs it as the non-root "
    "user nobody, offline from a wheelhouse, and then tasks from outside the checkout",
}

_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
_EXIT = re.compile(r"\bexit (\d+)\b")
LINE_TIMEOUT = 300


@dataclass(frozen=True)
class Line:
    number: int  # in README.md
    command: str
    comment: str

    @property
    def expected(self) -> int:
        found = _EXIT.search(self.comment)
        return int(found.group(1)) if found else 0

    def excluded(self) -> str | None:
        return next((why for p, why in EXCLUDED.items() if self.command.startswith(p)), None)


def readme_lines(text: str) -> list[Line]:
    """The command lines of every ```sh block, with their trailing `# comment`."""
    lines = []
    for block in _BLOCK.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        for offset, raw in enumerate(block.group(1).splitlines()):
            command, comment = _split_comment(raw)
            if command:
                lines.append(Line(first + offset, command, comment))
    return lines


def _split_comment(raw: str) -> tuple[str, str]:
    """`cmd   # what it does` -> ("cmd", "what it does"); a whole-line comment is no command."""
    stripped = raw.strip()
    if not stripped or stripped.startswith("#"):
        return "", ""
    found = re.search(r"\s#\s", stripped)
    if not found:
        return stripped, ""
    return stripped[: found.start()].rstrip(), stripped[found.end() :].strip()


def test_readme_lines_are_found_with_their_comments_and_exit_codes():
    text = "x\n```sh\n# note\nfab -H prod backup.all   # env # units\n\n./dev up\n```\n" + (
        "```python\nnot = 'a command'\n```\n```sh\nfab -H prod backup.verify  # exit 1 here\n```\n"
    )
    lines = readme_lines(text)
    assert [(ln.number, ln.command, ln.expected) for ln in lines] == [
        (4, "fab -H prod backup.all", 0),
        (6, "./dev up", 0),
        (12, "fab -H prod backup.verify", 1),
    ]
    assert lines[0].comment == "env # units" and lines[1].excluded()


def test_every_exclusion_matches_a_readme_line():
    lines = readme_lines(README.read_text())
    unused = [p for p in EXCLUDED if not any(ln.command.startswith(p) for ln in lines)]
    assert not unused, f"EXCLUDED entries that match no README line: {unused}"
    assert any(not ln.excluded() for ln in lines), "no README line runs"


@pytest.fixture
def lab(fleet, tmp_path) -> dict[str, str]:
    """A fresh store and private vault directory; an inventory as sandbox.up writes it."""
    for box in RESET:
        fleet.reset(box)
    specs = [s for s in recorded_specs(fleet.paths) if s.name in BOXES]
    repo_url = yaml.safe_load(fleet.inventory.read_text())["all"]["vars"]["layout"]["repo_url"]
    data = inventory_data(fleet.paths, specs, repo_url)
    settings = data["all"]["vars"]
    settings["store"] = {"path": str(tmp_path / "store")}
    offsite_dir = f"readme-{secrets.token_hex(4)}"
    settings["backup"]["offsite_dir"] = offsite_dir
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "ZACHOT_INVENTORY": str(inventory),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),  # nothing the lines write lands in the real ~
    }
    try:
        yield env
    finally:
        for box in RESET:
            fleet.reset(box)
        fleet.exec(VAULT, ["rm", "-rf", "--", f"{VAULT_ROOT}/{offsite_dir}"])


def run_line(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """bash -c the line as written, its stdin a terminal that answers "y" to any question."""
    controller, terminal = os.openpty()
    try:
        os.write(controller, b"y\n" * 8)
        return subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=LINE_TIMEOUT,
            start_new_session=True,  # the terminal is stdin only, never a controlling tty
        )
    finally:
        os.close(terminal)
        os.close(controller)


def test_every_readme_command_runs_as_written(lab):
    lines = readme_lines(README.read_text())
    ran, failures = [], []
    for line in lines:
        if line.excluded():
            continue
        started = time.monotonic()
        done = run_line(line.command, lab)
        ran.append(f"README.md:{line.number} {line.command} ({time.monotonic() - started:.1f} s)")
        if done.returncode != line.expected:
            tail = done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or [""]
            failures.append(
                f"README.md:{line.number}: `{line.command}` exited {done.returncode}, "
                f"expected {line.expected}: {tail[-1]}"
            )
    assert ran, "no README line ran"
    print("\n".join(ran))
    assert not failures, "\n".join(failures)
