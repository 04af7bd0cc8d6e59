"""restore.server's pure parts: recorded command output parsed, options and refs checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabfile.core.errors import UsageError
from fabfile.core.manifest import Manifest
from fabfile.core.model import Layout
from fabfile.core.restores import packages
from fabfile.core.restores import server_facts as facts
from fabfile.core.restores.server_options import PipSource, check_ref, wanted_ref
from fabfile.core.store import BackupRef

pytestmark = pytest.mark.unit

COMMIT = "299f172edb05843f0ed34d1e1429091715f7a932"
OTHER = "47781921353f0000000000000000000000000000"


# -- packages ---------------------------------------------------------------------------

# dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\n' as Debian 12 prints it: sorted by
# name, unknown names only on stderr, removed ("rc") and never-installed ("un") listed.
DPKG = "git\tii \npython3\tii \npython3-pip\trc \npython3-venv\tun \nredis-server\thi \nvim\tiR \n"


def test_installed_means_second_letter_i_and_no_error_flag():
    assert packages.parse_installed(DPKG) == {"git", "python3", "redis-server"}


def test_missing_keeps_the_wanted_order():
    have = packages.parse_installed(DPKG)
    wanted = ("python3", "python3-venv", "python3-pip", "redis-server", "git", "nosuch")
    assert packages.missing(wanted, have) == ["python3-venv", "python3-pip", "nosuch"]


def test_nothing_missing_means_no_apt_at_all():
    assert packages.apt_commands([]) == []


def test_apt_updates_then_installs_non_interactively():
    update, install = packages.apt_commands(["git", "python3-venv"])
    assert update[0] == "apt-get" and update[-1] == "update"
    assert install[:2] == ["env", "DEBIAN_FRONTEND=noninteractive"]
    assert install[2] == "apt-get" and "-y" in install
    assert install[-3:] == ["--", "git", "python3-venv"]


def test_the_fact_asks_dpkg_query_for_exactly_the_names():
    fact = packages.installed(("git", "python3"))
    assert fact.argv[0] == "dpkg-query" and fact.argv[-3:] == ("--", "git", "python3")


# -- options ----------------------------------------------------------------------------


def test_pip_defaults_to_pypi():
    pip = PipSource.parse(None, None, None)
    assert pip == PipSource() and pip.pip_args("/w") == []


def test_find_links_over_http_is_offline_and_trusted():
    pip = PipSource.parse(None, "http://10.231.2.1:8080/wheels/", None)
    assert pip.pip_args("/w") == [
        "--no-index",
        "--find-links",
        "http://10.231.2.1:8080/wheels/",
        "--trusted-host",
        "10.231.2.1",
    ]


def test_index_url_over_https_needs_no_trust():
    pip = PipSource.parse(None, None, "https://pypi.example/simple")
    assert pip.pip_args("/w") == ["--index-url", "https://pypi.example/simple"]


def test_wheelhouse_installs_from_the_pushed_directory(tmp_path: Path):
    (tmp_path / "redis-5.2.1-py3-none-any.whl").write_bytes(b"wheel")
    pip = PipSource.parse(str(tmp_path), None, None)
    assert pip.wheelhouse == tmp_path
    assert pip.pip_args("/opt/zachot/wheelhouse") == [
        "--no-index",
        "--find-links",
        "/opt/zachot/wheelhouse",
    ]


@pytest.mark.parametrize(
    ("wheelhouse", "find_links", "index_url", "said"),
    [
        ("{tmp}", "http://h/w", None, "at most one of --wheelhouse, --find-links"),
        (None, "http://h/w", "https://h/simple", "at most one of --find-links, --index-url"),
        (None, "ftp://h/wheels", None, "--find-links 'ftp://h/wheels' is not an http"),
        (None, None, "/srv/simple", "--index-url '/srv/simple' is not an http"),
        ("{tmp}/nope", None, None, "no such directory"),
        ("{tmp}", None, None, "holds no \\*.whl"),
    ],
)
def test_bad_pip_options_are_usage_errors(tmp_path, wheelhouse, find_links, index_url, said):
    wheelhouse = wheelhouse and wheelhouse.format(tmp=tmp_path)
    with pytest.raises(UsageError, match=said):
        PipSource.parse(wheelhouse, find_links, index_url)


@pytest.mark.parametrize("ref", ["v1.2.0", COMMIT, "299f172", "release/2026-11", "main"])
def test_good_refs(ref):
    assert check_ref(ref) == ref


@pytest.mark.parametrize("ref", ["-x", "--upload-pack=evil", "a..b", "v1 2", "", "v1;rm"])
def test_refs_that_could_be_options_or_ranges_are_refused(ref):
    with pytest.raises(UsageError, match="--ref"):
        check_ref(ref)


def backup(kind: str, stamp: str, deployed: object) -> BackupRef:
    manifest = Manifest(
        format=1,
        id=f"20261124T{stamp}Z",
        host="prod",
        kind=kind,
        created=f"2026-11-24T{stamp[:2]}:{stamp[2:4]}:{stamp[4:]}Z",
        files=(),
        meta={} if deployed is None else {"deployed": deployed},
    )
    return BackupRef("prod", kind, manifest.id, Path("/store"), manifest)


def test_ref_given_wins_over_the_recorded_commit():
    env = backup("env", "150000", {"commit": COMMIT, "describe": "v1.2.0"})
    assert wanted_ref("v1.1.0", [env]).ref == "v1.1.0"


def test_the_newest_backup_names_the_commit():
    env = backup("env", "150000", {"commit": OTHER, "describe": None})
    units = backup("units", "160000", {"commit": COMMIT, "describe": "v1.2.0"})
    wanted = wanted_ref(None, [env, units])
    assert wanted.ref == COMMIT
    assert "v1.2.0" in wanted.why and "units backup 20261124T160000Z" in wanted.why


def test_a_backup_without_a_commit_falls_back_to_one_with_it():
    env = backup("env", "160000", {"commit": None, "describe": None})
    units = backup("units", "150000", {"commit": COMMIT, "describe": None})
    assert wanted_ref(None, [env, units]).ref == COMMIT


def test_no_recorded_commit_asks_for_ref():
    env, units = backup("env", "150000", None), backup("units", "150000", {"commit": None})
    with pytest.raises(UsageError, match=r"record no deployed commit.*--ref"):
        wanted_ref(None, [env, units])


def test_a_recorded_commit_that_is_not_one_is_refused():
    env = backup("env", "150000", {"commit": "--upload-pack=x", "describe": None})
    with pytest.raises(UsageError, match="not a commit id"):
        wanted_ref(None, [env])


# -- what the box says ------------------------------------------------------------------


def test_service_dirs_parents_first_and_the_env_directory_closed():
    specs = facts.service_dirs(Layout())
    assert [(s.path, f"{s.mode:o}") for s in specs] == [
        ("/opt/zachot", "755"),
        ("/opt/zachot/envs", "755"),
        ("/opt/zachot/envs/prod", "755"),
        ("/opt/zachot/envs/prod/etc", "750"),
        ("/opt/zachot/backups", "700"),
    ]


def test_service_dirs_are_listed_once_when_the_layout_folds_them():
    layout = Layout(root="/srv/z", venv_dir="/srv/z/venv", env_file="/srv/z/z.env")
    paths = [s.path for s in facts.service_dirs(layout)]
    assert paths == ["/srv/z", "/srv/z/venv", "/opt/zachot/backups"]


# stat -c "%a %U %G %n" for the directories that exist; missing ones print nothing.
STATS = "755 zachot zachot /opt/zachot\n750 root root /opt/zachot/envs/prod/etc\n"


def test_dir_stats_parse_and_readiness():
    have = facts.parse_dir_stats(STATS)
    assert have["/opt/zachot"] == facts.DirStat(0o755, "zachot", "zachot")
    root = [facts.DirSpec("/opt/zachot", 0o755)]
    assert facts.dirs_ready(have, root, "zachot")
    assert not facts.dirs_ready(have, [facts.DirSpec("/opt/zachot", 0o700)], "zachot")
    assert not facts.dirs_ready(have, [facts.DirSpec("/opt/zachot/envs/prod/etc", 0o750)], "zachot")
    assert not facts.dirs_ready(have, [*root, facts.DirSpec("/opt/zachot/logs", 0o755)], "zachot")


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("absent\n", facts.Checkout("absent")),
        ("not-a-repo\n", facts.Checkout("not-a-repo")),
        (f"head {COMMIT}\nwant {COMMIT}\n", facts.Checkout("repo", COMMIT, COMMIT)),
        (f"head {OTHER}\nwant \n", facts.Checkout("repo", OTHER, None)),
        ("head \nwant \n", facts.Checkout("repo", None, None)),
    ],
)
def test_parse_checkout(stdout, expected):
    assert facts.parse_checkout(stdout) == expected


def test_checkout_is_done_only_at_the_wanted_commit():
    assert facts.Checkout("repo", COMMIT, COMMIT).done
    assert not facts.Checkout("repo", OTHER, COMMIT).done
    assert not facts.Checkout("repo", None, None).done
    assert not facts.Checkout("absent").done


SHA_A, SHA_B = "a" * 64, "b" * 64


@pytest.mark.parametrize(
    ("stdout", "done"),
    [
        (f"{SHA_A}\n{SHA_A}\n", True),
        (f"{SHA_A}\n{SHA_B}\n", False),  # requirements.txt changed since the install
        (f"-\n{SHA_A}\n", False),  # no venv or no marker yet
        ("-\n-\n", False),  # no repo yet
        ("cat: permission denied\n-\n", False),
    ],
)
def test_venv_is_done_when_its_marker_matches_requirements(stdout, done):
    assert facts.parse_venv(stdout).done is done


# systemctl show -p LoadState,NeedDaemonReload,UnitFileState on systemd 252 (Debian 12).
SHOW = (
    "LoadState=loaded\nUnitFileState=enabled\nNeedDaemonReload=no\n\n"
    "LoadState=loaded\nUnitFileState=disabled\nNeedDaemonReload=no\n\n"
    "LoadState=not-found\nUnitFileState=\nNeedDaemonReload=no\n"
)


def test_unit_show_blocks_in_argument_order():
    states = facts.parse_unit_show(SHOW)
    assert [s["LoadState"] for s in states] == ["loaded", "loaded", "not-found"]
    assert states[1]["UnitFileState"] == "disabled"


def test_units_ready_needs_loaded_enabled_and_no_pending_reload():
    ready = "LoadState=loaded\nUnitFileState=enabled\nNeedDaemonReload=no\n"
    stale = "LoadState=loaded\nUnitFileState=enabled\nNeedDaemonReload=yes\n"
    assert facts.units_ready(facts.parse_unit_show(ready + "\n" + ready), 2)
    assert not facts.units_ready(facts.parse_unit_show(ready + "\n" + stale), 2)
    assert not facts.units_ready(facts.parse_unit_show(SHOW), 3)
    assert not facts.units_ready(facts.parse_unit_show(ready), 2)  # a unit not answered
