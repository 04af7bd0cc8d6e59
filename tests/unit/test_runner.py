from __future__ import annotations

import errno
import json
import os
from dataclasses import replace

import pytest
from invoke import Config, Context
from invoke.exceptions import Exit

from fabfile.core import facts, runner
from fabfile.core.errors import ConnectError, ExitCode, UsageError
from fabfile.core.facts import Fact
from fabfile.core.inventory import load_inventory
from fabfile.core.model import Host
from fabfile.core.transport import CommandResult

pytestmark = pytest.mark.unit

HOSTS = [Host(name=n) for n in ("prod", "staging", "dead")]


def work(host: Host) -> str:
    if host.name == "dead":
        raise ConnectError("dead (10.0.0.9:22): connection refused")
    return f"{host.name} done"


def test_one_failing_host_does_not_stop_the_others():
    outcomes = runner.for_each_host(HOSTS, work, title="t", parallel=2)
    assert [(o.host, o.ok) for o in outcomes] == [
        ("prod", True),
        ("staging", True),
        ("dead", False),
    ]
    with pytest.raises(Exit) as exc:
        runner.finish(outcomes)
    assert exc.value.code == ExitCode.PARTIAL


def test_single_host_failure_keeps_its_own_exit_code():
    outcomes = runner.for_each_host(HOSTS[2:], work, title="t")
    with pytest.raises(Exit) as exc:
        runner.finish(outcomes)
    assert exc.value.code == ExitCode.UNREACHABLE


def test_all_ok_exits_normally():
    runner.finish(runner.for_each_host(HOSTS[:2], work, title="t"))


def test_parallel_must_be_positive():
    with pytest.raises(UsageError, match="--parallel"):
        runner.for_each_host(HOSTS, work, title="t", parallel=0)


def test_confirm_refuses_without_yes_when_not_interactive(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(UsageError, match="refusing without --yes"):
        runner.confirm("Restore?", yes=False)
    runner.confirm("Restore?", yes=True)


def test_target_hosts_come_from_the_whole_h_list_or_every_host(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(
        "all:\n  vars:\n    backup:\n      offsite_host: vault\n"
        "  hosts:\n    prod:\n    prod2:\n    vault:\n"
    )
    inventory = load_inventory(path)

    def names(hosts_flag: str | None, **kwargs) -> list[str]:
        c = Context(Config(overrides={"zachot": {"hosts": hosts_flag}}))
        return [h.name for h in runner.target_hosts(c, inventory, **kwargs)]

    assert names("prod2,vault") == ["prod2", "vault"]
    assert names(None, required=False) == ["prod", "prod2", "vault"]
    assert names(None, required=False, offsite_boxes=False) == ["prod", "prod2"]
    with pytest.raises(UsageError, match="name a host or group with -H"):
        names(None)


# -- issue 12: one host's surprise must not sink the rest -----------------------------------


class FakeTransport:
    """Answers every command with a fixed result, like a host that always says the same."""

    def __init__(self, host: Host, exit_code: int = 0, stdout: str = "", stderr: str = ""):
        self.host = host
        self.said = CommandResult(("x",), exit_code, stdout, stderr)

    def run(self, argv, **_kwargs) -> CommandResult:
        return replace(self.said, argv=tuple(argv))


def _agent_report(host: Host) -> str:
    json.loads('{"ok": tru')  # a trailer cut short
    return "unreachable"


def _parser_raising(host: Host) -> str:
    fact = Fact(("cat", "/etc/os-release"), lambda out: {}["VERSION_ID"])
    return facts.gather(FakeTransport(host, stdout="ID=debian\n"), fact)


def _disk_full(host: Host) -> str:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"/store/{host.name}/env/x.part")


SURPRISES = {"good": lambda h: "2 backups", "json": _agent_report, "parser": _parser_raising,
             "disk": _disk_full}  # fmt: skip


def surprising(host: Host) -> str:
    return SURPRISES[host.name](host)


@pytest.mark.parametrize("parallel", [1, 4])
def test_an_unexpected_exception_is_that_hosts_row_and_the_others_finish(parallel, capsys):
    hosts = [Host(name=n) for n in ("json", "good", "parser", "disk")]
    outcomes = runner.for_each_host(
        hosts, surprising, title="backup.all summary", parallel=parallel
    )
    assert [(o.host, o.ok, o.exit_code) for o in outcomes] == [
        ("json", False, ExitCode.FAILED),
        ("good", True, ExitCode.OK),
        ("parser", False, ExitCode.FAILED),
        ("disk", False, ExitCode.FAILED),
    ]
    json_row, _, parser_row, disk_row = (o.detail for o in outcomes)
    assert "JSONDecodeError" in json_row and "Expecting" in json_row
    assert "KeyError" in parser_row and "VERSION_ID" in parser_row
    assert "OSError" in disk_row and "No space left on device" in disk_row
    assert all("\n" not in o.detail for o in outcomes)
    with pytest.raises(Exit) as exc:
        runner.finish(outcomes)
    assert exc.value.code == ExitCode.PARTIAL
    said = capsys.readouterr()
    assert "Traceback" not in said.out + said.err
    assert "3 of 4 hosts failed: json, parser, disk" in said.err
    for name in ("json", "good", "parser", "disk"):
        assert name in said.out  # every host has its row


def test_every_host_failing_unexpectedly_exits_1():
    hosts = [Host(name=n) for n in ("json", "disk")]
    with pytest.raises(Exit) as exc:
        runner.finish(runner.for_each_host(hosts, surprising, title="t"))
    assert exc.value.code == ExitCode.FAILED


def test_unexpected_and_expected_failures_keep_their_codes():
    def work(host: Host) -> str:
        if host.name == "dead":
            raise ConnectError("dead: connection refused")
        return surprising(host)

    hosts = [Host(name=n) for n in ("dead", "disk", "good")]
    outcomes = runner.for_each_host(hosts, work, title="t", parallel=3)
    assert [o.exit_code for o in outcomes] == [ExitCode.UNREACHABLE, ExitCode.FAILED, ExitCode.OK]


def test_the_row_is_one_line_and_escaped_when_printed(capsys):
    def work(host: Host) -> str:
        raise ValueError("bad\nanswer \x1b]0;pwned\x07")

    outcomes = runner.for_each_host([Host(name="a"), Host(name="b")], work, title="t")
    assert "\n" not in outcomes[0].detail
    with pytest.raises(Exit):
        runner.finish(outcomes)
    said = capsys.readouterr()
    assert "\x1b" not in said.out + said.err and "\\x1b" in said.out


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_interrupts_are_not_a_hosts_failure(interrupt):
    def work(host: Host) -> str:
        raise interrupt()

    with pytest.raises(interrupt):
        runner.for_each_host([Host(name="a"), Host(name="b")], work, title="t")


def test_guarded_turns_a_surprise_into_one_line_and_exit_1(capsys):
    @runner.guarded
    def task() -> None:
        {}["sha256"]

    with pytest.raises(Exit) as exc:
        task()
    assert exc.value.code == ExitCode.FAILED
    said = capsys.readouterr().err
    assert "KeyError" in said and "sha256" in said and "Traceback" not in said
    assert len(said.strip().splitlines()) == 1


def test_guarded_lets_exit_through():
    @runner.guarded
    def task() -> None:
        raise Exit(code=3)

    with pytest.raises(Exit) as exc:
        task()
    assert exc.value.code == 3


class Quiet:
    """A Transport stand-in that connects nowhere."""

    def __init__(self, host: Host, **_kwargs) -> None:
        self.host = host

    def __enter__(self) -> Quiet:
        return self

    def __exit__(self, *_exc) -> None:
        return None


def test_checklist_a_surprise_on_one_host_is_its_row(monkeypatch):
    from fabfile.core import checklist

    def check(transport: Quiet):
        if transport.host.name == "bad":
            raise KeyError("units")  # a section the parser expected is missing
        raise checklist.ChecklistFailed("1 item failing")

    monkeypatch.setattr(checklist, "Transport", Quiet)
    monkeypatch.setattr(checklist, "check", check)
    hosts = [Host(name="bad"), Host(name="good")]
    outcomes = checklist.check_hosts(hosts, json=True)
    assert [o.host for o in outcomes] == ["bad", "good"]
    assert outcomes[0].exit_code == ExitCode.FAILED and "KeyError" in outcomes[0].detail


def test_status_a_surprise_on_one_host_is_its_row(monkeypatch):
    from fabfile.core.checklist import status

    def read_host(host: Host, password=None) -> status.HostStatus:
        if host.name == "bad":
            json.loads("@@units\n")  # a malformed answer
        return status.HostStatus(host.name, units={"zachot-api.service": "active"})

    monkeypatch.setattr(status, "read_host", read_host)
    monkeypatch.setattr(status, "offsite_ages", lambda hosts, find: {})
    states = status.read_all([Host(name="bad"), Host(name="good")], lambda n: Host(name=n))
    assert [s.host for s in states] == ["bad", "good"]
    assert "JSONDecodeError" in (states[0].down or "") and states[1].down is None
