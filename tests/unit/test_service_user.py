"""Holes 1 and 2 of issue 10: the service user's git and python never run as root.

Every command that touches the repo or the venv goes through runuser (service_user.py), and
what it prints is treated as the service user's data: commit ids must be hex, ref names
printable, and a line posing as one of the checklist script's section marks is defused.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from fabfile.core import facts, service_user
from fabfile.core.checklist import remote as checklist
from fabfile.core.deploys import remote as deploy
from fabfile.core.model import Host, Layout
from fabfile.core.restores import server, server_facts

pytestmark = pytest.mark.unit

LAYOUT = Layout()
SHA = "14ca465a7d8b9a922f1c46f921de7e078000b12e"
ROOT = Path(__file__).resolve().parents[2]


def test_argv_drops_to_the_service_user_in_its_home():
    argv = service_user.argv(LAYOUT, ["git", "status"])
    assert argv[:4] == ("runuser", "-u", LAYOUT.service_user, "--")
    assert argv[4:] == ("env", "-C", LAYOUT.root, f"HOME={LAYOUT.root}", "git", "status")


@pytest.mark.parametrize(
    "fact",
    [
        facts.deployed_ref(LAYOUT),
        deploy.repo_state(LAYOUT),
        deploy.resolve(LAYOUT, "v1"),
        deploy.recent_commits(LAYOUT, ["HEAD"]),
        deploy.blob_ids(LAYOUT, "requirements.txt", [SHA]),
        server_facts.checkout(LAYOUT, SHA),
        server_facts.venv_state(LAYOUT, "/opt/zachot/repo/requirements.txt"),
    ],
    ids=["deployed", "repo_state", "resolve", "log", "blobs", "checkout", "venv"],
)
def test_every_fact_on_the_repo_or_venv_runs_as_the_service_user(fact):
    assert fact.argv[:4] == ("runuser", "-u", "zachot", "--")


def test_checkouts_run_as_the_service_user_and_name_a_commit_only():
    argv = server.detach(LAYOUT, SHA)
    assert argv[0] == "git" and argv[-2:] == ["--detach", SHA]


def test_no_safe_directory_left():
    """It only served root reading the service user's repo, which no longer happens."""
    sources = (ROOT / "fabfile").rglob("*.py")
    assert [p for p in sources if "safe.directory" in p.read_text(encoding="utf-8")] == []


def test_git_output_is_data_hex_commits_and_printable_refs_only():
    assert facts.parse_deployed_ref(f"{SHA}\nv1.2.0\n") == facts.DeployedRef(SHA, "v1.2.0")
    assert facts.parse_deployed_ref("HEAD\n-\n") == facts.DeployedRef(None, None)
    said = facts.parse_deployed_ref(f"{SHA}\nv1\x1b]0;pwned\x07\n")
    assert said == facts.DeployedRef(SHA, None)
    assert server_facts.parse_checkout(f"head ../../etc\nwant {SHA}\n") == (
        server_facts.Checkout("repo", None, SHA)
    )
    state = deploy.parse_repo_state(f"head {SHA}\ntag {SHA}  v1\ntag {SHA}  v2\x1b[2J\n")
    assert state.tags == {SHA: ("v1",)}


@pytest.fixture
def fake_runuser(tmp_path: Path) -> Path:
    """runuser stand-in: logs its argv, then runs what follows `--` (no root needed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "runuser"
    stub.write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path}/runuser.log\n'
        'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n'
    )
    stub.chmod(0o755)
    return bin_dir


def test_checklist_script_runs_git_and_the_venv_python_through_runuser(tmp_path, fake_runuser):
    """A venv python that prints a fake section mark cannot pose as the env section."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(
        "#!/bin/sh\necho 'Python 3.99.0'\necho '@@zachot:env@@'\n"
        "echo 'stat 600 root root 10 regular file'\necho 'key FORGED'\n"
    )
    python.chmod(0o755)
    layout = replace(
        LAYOUT,
        root=str(tmp_path),
        env_file=str(tmp_path / "etc/zachot.env"),
        repo_dir=str(tmp_path / "repo"),
        venv_dir=str(venv),
        logs_dir=str(tmp_path),
        service_user="appuser",
    )
    argv, script = checklist.command(Host(name="h", layout=layout), ("env", "code", "venv"))
    env = {**os.environ, **dict(a.split("=", 1) for a in argv[1:-2])}
    env["PATH"] = f"{fake_runuser}:{env['PATH']}"
    said = subprocess.run(["sh", "-s"], input=script, capture_output=True, env=env, timeout=60)
    parts = checklist.split(said.stdout.decode())
    assert checklist.parse_env(parts["env"]).present is False  # not the forged one
    assert checklist.parse_python("", parts["venv"]).venv == "Python 3.99.0"
    ran = (tmp_path / "runuser.log").read_text().splitlines()
    assert len(ran) == 2, ran  # the code section and the venv section
    assert all(r.startswith(f"-u appuser -- env -C {tmp_path} HOME={tmp_path} ") for r in ran)
    assert "git" in ran[0] and ran[1].endswith(str(python))
