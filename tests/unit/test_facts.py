"""Issue 12: a fact whose command fails is an error, not "absent" (pyinfra's _get_fact).

Each Fact names the exit codes that mean an answer; any other exit fails the host with the
command, the code and stderr's last line, and the parser never sees that output.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest

from fabfile.core import facts
from fabfile.core.deploys import remote as deploy
from fabfile.core.errors import FactError, ZachotError
from fabfile.core.model import Host, Layout
from fabfile.core.restores import packages, server_facts, steps
from fabfile.core.transport import CommandResult

pytestmark = pytest.mark.unit

LAYOUT = Layout()
PROD = Host(name="prod")


@dataclass
class Answer:
    """A fake transport: one host that answers every command the same way."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    host: Host = PROD

    def run(self, argv, **_kwargs) -> CommandResult:
        return CommandResult(tuple(argv), self.exit_code, self.stdout, self.stderr)


def never(stdout: str) -> object:
    raise AssertionError("the parser ran on a failed command's output")


@pytest.mark.parametrize(
    ("code", "stderr"),
    [
        (126, "sh: 1: /usr/bin/git: Permission denied"),
        (127, "sh: 1: git: not found"),
        (1, "find: '/opt/zachot/logs/old': Permission denied"),
        (2, ""),
    ],
)
def test_a_failed_command_is_an_error_naming_it_and_the_parser_never_runs(code, stderr):
    fact = facts.Fact(("find", "/opt/zachot/logs"), never)
    with pytest.raises(FactError) as exc:
        facts.gather(Answer(code, "partial\n", f"warming up\n{stderr}\n"), fact)
    said = exc.value.message
    assert said.startswith("prod: ") and "find /opt/zachot/logs" in said
    assert f"exited {code}" in said
    assert (stderr or "warming up") in said and "\n" not in said
    assert isinstance(exc.value, ZachotError)  # so a host's row, not a traceback


def test_accepted_exit_codes_are_parsed():
    fact = facts.Fact(("test", "-f", "/x"), lambda out: out or "absent", exit_codes={0, 1})
    assert facts.gather(Answer(1), fact) == "absent"
    assert facts.gather(Answer(0, "there"), fact) == "there"
    with pytest.raises(FactError, match="exited 2"):
        facts.gather(Answer(2), fact)


def test_by_default_only_0_is_an_answer():
    assert facts.Fact(("true",), str).exit_codes == frozenset({0})


@pytest.mark.parametrize(
    ("fact", "absent"),
    [
        (facts.is_file("/etc/x"), False),
        (server_facts.user_exists("zachot"), False),
        (packages.installed(["redis-server"]), set()),
    ],
    ids=["is_file", "user_exists", "dpkg-query"],
)
def test_the_exit_code_that_means_absent_reads_as_absent_and_no_other(fact, absent):
    assert facts.gather(Answer(1), fact) == absent
    with pytest.raises(FactError):
        facts.gather(Answer(127, stderr="sh: 1: not found"), fact)
    with pytest.raises(FactError):
        facts.gather(Answer(126, stderr="Permission denied"), fact)


ALL_FACTS = [
    facts.deployed_ref(LAYOUT),
    facts.regular_files("/opt/zachot/logs", user=LAYOUT),
    facts.regular_files("/opt/zachot/backups", pattern="zachot.env.*", depth=1),
    steps.digests("/opt/zachot/envs/prod/etc/zachot.env"),
    server_facts.dir_stats(["/opt/zachot", "/opt/zachot/backups"]),
    server_facts.checkout(LAYOUT, "v1"),
    server_facts.venv_state(LAYOUT, "requirements.txt"),
    server_facts.unit_states(["zachot-api.service"]),
    deploy.repo_state(LAYOUT),
    deploy.resolve(LAYOUT, "v1"),
    deploy.recent_commits(LAYOUT, ["HEAD"]),
    deploy.blob_ids(LAYOUT, "requirements.txt", ["HEAD"]),
]


@pytest.mark.parametrize("fact", ALL_FACTS, ids=lambda f: " ".join(f.argv)[-40:])
def test_no_fact_turns_a_failure_into_nothing_there(fact):
    script = " ".join(fact.argv)
    assert "; true" not in script and "|| echo -" not in script and "|| true" not in script
    with pytest.raises(FactError):
        facts.gather(Answer(128, stderr="fatal: detected dubious ownership"), fact)


def sh(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script, "sh", *args], capture_output=True, text=True)


def test_a_missing_directory_lists_nothing_but_a_failing_find_fails(tmp_path):
    fact = facts.regular_files(str(tmp_path / "absent"))
    said = subprocess.run(fact.argv, capture_output=True, text=True)
    assert said.returncode == 0 and facts.parse_entries(said.stdout) == []
    (tmp_path / "a.log").write_text("x")
    listed = subprocess.run(facts.regular_files(str(tmp_path)).argv, capture_output=True, text=True)
    assert [e.name for e in facts.parse_entries(listed.stdout)] == ["a.log"]
    orphan = tmp_path / "no-parent" / "logs"
    failed = subprocess.run(facts.regular_files(str(orphan)).argv, capture_output=True, text=True)
    assert failed.returncode != 0 and "No such file" in failed.stderr


def test_digests_fail_when_sha256sum_fails(tmp_path):
    env = tmp_path / "zachot.env"
    env.write_text("A=1\n")
    fact = steps.digests(str(env))
    ok = subprocess.run(fact.argv, capture_output=True, text=True)
    assert ok.returncode == 0 and str(env) in fact.parse(ok.stdout)
    missing = subprocess.run(steps.digests(str(tmp_path / "none")).argv, capture_output=True)
    assert missing.returncode == 0 and missing.stdout == b""
    broken = subprocess.run(
        ["env", "PATH=/nonexistent", "/bin/sh", *fact.argv[1:]], capture_output=True, text=True
    )
    assert broken.returncode == 127
