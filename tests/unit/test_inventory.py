"""inventory.yml: parsing, precedence, resolution, and one clear error per bad file."""

from __future__ import annotations

import dataclasses
import textwrap
import time
from pathlib import Path

import pytest

from fabfile.core import inventory as inventory_module
from fabfile.core.errors import InventoryError, UnknownHostError, UsageError
from fabfile.core.inventory import (
    Inventory,
    inventory_path,
    load_inventory,
)
from fabfile.core.model import Host, Layout, StoreSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

MARK = "# <-"  # marks the line an error must point at


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Inventory:
    return load_inventory(write(tmp_path, text))


def marked_line(text: str) -> int:
    lines = textwrap.dedent(text).splitlines()
    (found,) = [number for number, line in enumerate(lines, 1) if MARK in line]
    return found


# --- good files -------------------------------------------------------------------


def test_minimal_host_gets_runbook_defaults(tmp_path):
    inv = load(tmp_path, "all:\n  hosts:\n    prod:\n")
    assert inv.host("prod") == Host(name="prod")
    assert inv.groups == {"all": ("prod",)}


def test_group_with_no_hosts_and_empty_all_are_fine(tmp_path):
    inv = load(
        tmp_path,
        """
        all:
          children:
            empty:
            also-empty: {}
        """,
    )
    assert inv.hosts == {}
    assert inv.groups == {"all": (), "empty": (), "also-empty": ()}
    assert inv.resolve("empty") == []


PRECEDENCE = """
all:
  vars:
    port: 22
    user: base
    connect_timeout: 5
  hosts:
    loose:
  children:
    outer:
      vars:
        port: 2200
        user: outer
      hosts:
        a:
      children:
        inner:
          vars:
            port: 2300
          hosts:
            b:
            c:
              port: 2400
    sibling1:
      vars: {user: sib1}
      hosts:
        d:
    sibling2:
      vars: {user: sib2}
      hosts:
        d:
"""


def test_precedence_all_group_nested_host(tmp_path):
    inv = load(tmp_path, PRECEDENCE)
    loose, a, b, c, d = (inv.host(n) for n in ("loose", "a", "b", "c", "d"))
    assert (loose.port, loose.user, loose.connect_timeout) == (22, "base", 5.0)
    assert (a.port, a.user) == (2200, "outer")
    assert (b.port, b.user) == (2300, "outer")  # nested child beats its parent
    assert c.port == 2400  # the host beats every group
    assert d.user == "sib2"  # between siblings, the later one in the file wins
    assert d.port == 22


def test_groups_are_recursive_and_host_groups_exclude_all(tmp_path):
    inv = load(tmp_path, PRECEDENCE)
    assert inv.groups == {
        "all": ("loose", "a", "b", "c", "d"),
        "outer": ("a", "b", "c"),
        "inner": ("b", "c"),
        "sibling1": ("d",),
        "sibling2": ("d",),
    }
    assert inv.host("b").groups == ("outer", "inner")
    assert inv.host("d").groups == ("sibling1", "sibling2")
    assert inv.host("loose").groups == ()
    assert list(inv.hosts) == ["loose", "a", "b", "c", "d"]  # file order


def test_sections_merge_key_by_key(tmp_path):
    inv = load(
        tmp_path,
        """
        all:
          vars:
            layout: {root: /srv/zachot, units: [a.service]}
            dramatiq: {namespace: ns}
          children:
            production:
              vars:
                layout:
                  logs_dir: /srv/zachot/logs
              hosts:
                prod:
                  layout:
                    env_file: /srv/zachot/.env
                  dramatiq:
                    queues: [default, mail]
        """,
    )
    layout = inv.host("prod").layout
    assert layout.root == "/srv/zachot"
    assert layout.logs_dir == "/srv/zachot/logs"
    assert layout.env_file == "/srv/zachot/.env"
    assert layout.units == ("a.service",)
    assert layout.repo_dir == Layout().repo_dir  # untouched defaults stay
    assert inv.host("prod").dramatiq.namespace == "ns"
    assert inv.host("prod").dramatiq.queues == ("default", "mail")


def test_host_listed_in_several_groups_with_vars_once(tmp_path):
    inv = load(
        tmp_path,
        """
        all:
          hosts:
            prod:
              address: 192.0.2.1
          children:
            production:
              hosts:
                prod:
            web:
              hosts:
                prod: {}
        """,
    )
    assert inv.host("prod").address == "192.0.2.1"
    assert inv.host("prod").groups == ("production", "web")


def test_null_unsets_an_inherited_optional_value(tmp_path):
    inv = load(
        tmp_path,
        """
        all:
          vars: {user: deploy, port: 2222}
          hosts:
            prod:
              user: ~
              port:
        """,
    )
    assert (inv.host("prod").user, inv.host("prod").port) == (None, None)


def test_value_types(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    inv = load(
        tmp_path,
        """
        all:
          hosts:
            prod:
              address: "2001:db8::10"
              port: 0x16
              sudo: no              # YAML 1.1 boolean, as PyYAML reads it
              scratch: true
              connect_timeout: 3    # an int is fine where a float is wanted
              identity_file: keys/id_ed25519
              known_hosts: ~/kh
              host_key_policy: accept-new
              sudo_password_env: ZACHOT_SUDO
              layout:
                repo_url: git@github.com:your-org/zachot.git
                units_repo_dir: infra
                api_health_url: https://zachot.example/health?full=1
              redis: {url: "rediss://cache.example:6380/1", unit: redis@main.service}
              store: {path: store, lock_timeout: 0}
        """,
    )
    host = inv.host("prod")
    assert host.address == "2001:db8::10"
    assert host.port == 22
    assert host.sudo is False and host.scratch is True
    assert host.connect_timeout == 3.0 and isinstance(host.connect_timeout, float)
    assert host.identity_file == tmp_path / "keys" / "id_ed25519"
    assert host.known_hosts == tmp_path / "home" / "kh"
    assert host.host_key_policy == "accept-new"
    assert host.layout.repo_url == "git@github.com:your-org/zachot.git"
    assert host.layout.units_repo_dir == "infra"
    assert host.redis.unit == "redis@main.service"
    assert host.store == StoreSettings(path=tmp_path / "store", lock_timeout=0.0)


def test_yaml_merge_keys_and_aliases(tmp_path):
    inv = load(
        tmp_path,
        """
        all:
          hosts:
            prod: &base
              user: deploy
              port: 2222
            staging:
              <<: *base
              port: 2223
        """,
    )
    assert (inv.host("staging").user, inv.host("staging").port) == ("deploy", 2223)


def test_resolve(tmp_path):
    inv = load(tmp_path, PRECEDENCE)
    assert [h.name for h in inv.resolve("a")] == ["a"]
    assert [h.name for h in inv.resolve("inner")] == ["b", "c"]
    assert [h.name for h in inv.resolve("d, inner,outer,a")] == ["d", "b", "c", "a"]
    assert [h.name for h in inv.resolve("all")] == ["loose", "a", "b", "c", "d"]
    assert inv.resolve("a")[0] is inv.host("a")


@pytest.mark.parametrize("pattern", ["nosuch", "a,nosuch", "", " , "])
def test_resolve_unknown_lists_known_names(tmp_path, pattern):
    inv = load(tmp_path, PRECEDENCE)
    with pytest.raises(UnknownHostError) as caught:
        inv.resolve(pattern)
    assert caught.value.known == inv.names()
    assert "loose, a, b, c, d, all, outer, inner" in str(caught.value)
    assert isinstance(caught.value, UsageError)


def test_host_lookup_and_names(tmp_path):
    inv = load(tmp_path, PRECEDENCE)
    assert inv.names() == [
        "loose",
        "a",
        "b",
        "c",
        "d",
        "all",
        "outer",
        "inner",
        "sibling1",
        "sibling2",
    ]
    with pytest.raises(UnknownHostError, match="'outer'"):
        inv.host("outer")  # a group is not a host


def test_shipped_inventory_loads():
    inv = load_inventory(ROOT / "inventory.yml")
    assert list(inv.hosts) == ["prod", "staging", "new-box"]
    assert inv.host("prod").address == "203.0.113.10"
    assert inv.host("new-box").scratch is True
    assert inv.host("prod").scratch is False
    assert inv.host("prod").host_key_policy == "strict"
    assert inv.host("prod").identity_file == Path("~/.ssh/id_ed25519").expanduser()
    assert inv.host("prod").store.path == Path("~/backups/zachot").expanduser()
    assert inv.host("prod").layout == Layout()  # the runbook defaults, written out
    assert inv.host("prod").dramatiq.namespace == "dramatiq"
    assert inv.host("prod").dramatiq.queues == ("default",)
    assert [h.name for h in inv.resolve("production")] == ["prod"]
    assert [h.name for h in inv.resolve("scratch")] == ["new-box"]


def test_inventory_path_search_order(monkeypatch, tmp_path):
    # $ZACHOT_INVENTORY, config zachot.inventory, ./inventory.yml, ~/.config/zachot/...;
    # never next to the package (site-packages once installed).
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    user_file = home / ".config" / "zachot" / "inventory.yml"
    user_file.parent.mkdir(parents=True)
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("ZACHOT_INVENTORY", raising=False)
    with pytest.raises(UsageError) as caught:
        inventory_path()
    message = str(caught.value)
    assert "\n" not in message
    for looked in (
        "$ZACHOT_INVENTORY",
        "zachot.inventory",
        str(cwd / "inventory.yml"),
        str(user_file),
    ):
        assert looked in message
    user_file.write_text("all:\n")
    assert inventory_path() == user_file
    (cwd / "inventory.yml").write_text("all:\n")
    assert inventory_path() == cwd / "inventory.yml"
    assert inventory_path(str(tmp_path / "cfg.yml")) == tmp_path / "cfg.yml"
    monkeypatch.setenv("ZACHOT_INVENTORY", str(tmp_path / "env.yml"))
    assert inventory_path(str(tmp_path / "cfg.yml")) == tmp_path / "env.yml"


def test_every_check_names_a_real_field():
    # Guards against a model.py rename silently dropping a validation.
    for section, field in inventory_module._CHECKS:
        cls = Host if section == "" else type(getattr(Host(name="x"), section))
        assert field in {f.name for f in dataclasses.fields(cls)}, (section, field)


# --- files that cannot be read ------------------------------------------------------


def test_missing_file_says_how_to_choose_another(tmp_path):
    path = tmp_path / "nope.yml"
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(path) in str(caught.value)
    assert "ZACHOT_INVENTORY" in str(caught.value)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(InventoryError, match="cannot read"):
        load_inventory(tmp_path)


def test_not_utf8(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_bytes(b"all:\n  hosts:\n    pr\xffod:\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert caught.value.line == 3 and "UTF-8" in str(caught.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path, text):
    with pytest.raises(InventoryError, match="empty"):
        load(tmp_path, text)


# --- bad files -------------------------------------------------------------------------
# Each case: the file, the key path the error must name, and words it must contain. The
# line it must name is the one marked "# <-".


def bad(case_id: str, text: str, key: str, problem: str):
    return pytest.param(text, key, problem, id=case_id)


def bad_var(case_id: str, line: str, key: str, problem: str):
    """One marked line under all.vars; key is relative to all.vars ("" for a file-level error)."""
    return bad(
        case_id, f"all:\n  vars:\n    {line}  # <-\n", f"all.vars.{key}" if key else "", problem
    )


def bad_host(case_id: str, line: str, key: str, problem: str):
    """One marked line in host prod inside group production."""
    text = (
        f"all:\n  children:\n    production:\n      hosts:\n        prod:\n          {line}  # <-\n"
    )
    return bad(case_id, text, f"all.children.production.hosts.prod.{key}", problem)


SHAPE = [
    bad("not-a-mapping", "- prod  # <-\n- staging\n", "", "expected a mapping"),
    bad("missing-all", "{}  # <-\n", "", "missing the top-level key 'all'"),
    bad("typo-all", "alll:  # <-\n  hosts: {}\n", "alll", "did you mean 'all'?"),
    bad("all-is-list", "all: [prod]  # <-\n", "all", "expected a mapping"),
    bad("hosts-as-list", "all:\n  hosts: [prod]  # <-\n", "all.hosts", "mapping of host names"),
    bad(
        "children-typo", "all:\n  childern: {}  # <-\n", "all.childern", "did you mean 'children'?"
    ),
    bad(
        "var-outside-vars",
        "all:\n  children:\n    production:\n      address: x  # <-\n",
        "all.children.production.address",
        "host variables go under 'vars:'",
    ),
    bad(
        "host-vars-scalar", "all:\n  hosts:\n    prod: 1.2.3.4  # <-\n", "all.hosts.prod", "mapping"
    ),
    bad_var("section-scalar", "layout: /opt", "layout", "expected a mapping of layout settings"),
    bad(
        "list-key", "all:\n  vars:\n    [port]: 22  # <-\n", "all.vars", "keys must be plain names"
    ),
    bad(
        "merge-scalar", "all:\n  vars:\n    <<: 5  # <-\n", "all.vars", "'<<' must merge a mapping"
    ),
]

UNKNOWN_KEYS = [
    bad_var("typo-address", "adress: x", "adress", "unknown key 'adress'; did you mean 'address'?"),
    bad_host(
        "typo-env-file", "layout: {env_flie: /x}", "layout.env_flie", "did you mean 'env_file'?"
    ),
    bad_var("misplaced-section-key", "env_file: /x", "env_file", "did you mean 'layout.env_file'?"),
    bad(
        "ansible-var-outside-vars",
        "all:\n  children:\n    g:\n      ansible_user: x  # <-\n",
        "all.children.g.ansible_user",
        "host variables go under 'vars:'",
    ),
    bad_var("no-close-match", "zzz: 1", "zzz", "valid keys: address, port"),
    bad_var("name-not-settable", "groups: [a]", "groups", "unknown key 'groups'"),
    bad_var("redis-typo", "redis: {urll: x}", "redis.urll", "did you mean 'url'?"),
]

DUPLICATES = [
    bad(
        "duplicate-host",
        "all:\n  hosts:\n    prod:\n    prod:  # <-\n",
        "all.hosts.prod",
        "duplicate key 'prod' (first at line 3)",
    ),
    bad(
        "duplicate-var",
        "all:\n  vars:\n    port: 22\n    port: 23  # <-\n",
        "all.vars.port",
        "duplicate key 'port'",
    ),
    bad(
        "host-defined-twice",
        "all:\n  hosts:\n    prod: {port: 22}\n  children:\n    g:\n      hosts:\n"
        "        prod: {user: x}  # <-\n",
        "all.children.g.hosts.prod",
        "host 'prod' is defined twice (first at line 3)",
    ),
    bad(
        "group-vars-twice",
        "all:\n  children:\n    a: {vars: {port: 1}}\n    b:\n      children:\n"
        "        a:\n          vars: {port: 2}  # <-\n",
        "all.children.b.children.a.vars",
        "group 'a' has vars already (line 3)",
    ),
    bad(
        "group-cycle",
        "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n"
        "            a:  # <-\n",
        "all.children.a.children.b.children.a",
        "groups contain each other (a -> b -> a)",
    ),
    bad(
        "group-contains-itself",
        "all:\n  children:\n    a:\n      children:\n        a:  # <-\n",
        "all.children.a.children.a",
        "groups contain each other (a -> a)",
    ),
    bad(
        "group-cycle-by-reference",
        "all:\n  children:\n    a:\n      children:\n        b:\nb:\n  children:\n    a:  # <-\n",
        "b.children.a",
        "groups contain each other (a -> b -> a)",
    ),
    bad(
        "ansible-and-own-key-differ",
        "all:\n  hosts:\n    prod:\n      address: 192.0.2.1\n"
        "      ansible_host: 192.0.2.2  # <-\n",
        "all.hosts.prod.ansible_host",
        "'ansible_host' and 'address' are both given with different values; keep one",
    ),
    bad(
        "ansible-value-checked",
        "all:\n  hosts:\n    prod:\n      ansible_port: 70000  # <-\n",
        "all.hosts.prod.ansible_port",
        "must be a port number",
    ),
    bad(
        "group-named-like-host",
        "all:\n  hosts:\n    staging:\n  children:\n    staging:  # <-\n",
        "all.children.staging",
        "same name as a host",
    ),
    bad(
        "host-named-like-group",
        "all:\n  children:\n    staging:\n  hosts:\n    staging:  # <-\n",
        "all.hosts.staging",
        "same name as a group",
    ),
    bad(
        "child-named-all",
        "all:\n  children:\n    all: {}  # <-\n",
        "all.children.all",
        "implicit top group",
    ),
    bad("host-named-all", "all:\n  hosts:\n    all:  # <-\n", "all.hosts.all", "reserved"),
]

NAMES = [
    bad("host-dash", "all:\n  hosts:\n    -prod:  # <-\n", "all.hosts.-prod", "not a valid name"),
    bad(
        "host-semicolon",
        "all:\n  hosts:\n    'prod;id':  # <-\n",
        "all.hosts.prod;id",
        "not a valid name",
    ),
    bad("host-unicode", "all:\n  hosts:\n    pröd:  # <-\n", "all.hosts.pröd", "not a valid name"),
    bad(
        "group-comma",
        "all:\n  children:\n    'a,b':  # <-\n",
        "all.children.a,b",
        "not a valid name",
    ),
    bad_var(
        "service-user", "layout: {service_user: Zachot}", "layout.service_user", "service user"
    ),
    bad_var("unit-name", "layout: {units: [zachot-api]}", "layout.units[0]", "systemd unit"),
    bad_var("unit-inject", "redis: {unit: 'x;reboot.service'}", "redis.unit", "systemd unit"),
    bad_var(
        "env-key",
        "layout: {required_env_keys: [OK, 1BAD]}",
        "layout.required_env_keys[1]",
        "variable",
    ),
    bad_var(
        "sudo-env", "sudo_password_env: MY-PASS", "sudo_password_env", "environment variable name"
    ),
    bad_var("ssh-user", "user: '-oProxyCommand=x'", "user", "not a valid user name"),
    bad_var(
        "namespace", "dramatiq: {namespace: 'dramatiq:queue'}", "dramatiq.namespace", "namespace"
    ),
    bad_var("queues-empty", "dramatiq: {queues: []}", "dramatiq.queues", "at least one"),
    bad_var("queues-twice", "dramatiq: {queues: [a, a]}", "dramatiq.queues[1]", "listed twice"),
    bad_var("address-option", "address: -oProxyCommand=x", "address", "not a host name or IP"),
    bad_var("address-space", "address: 'a b'", "address", "not a host name or IP"),
    bad_var("address-semicolon", "address: 'host;id'", "address", "not a host name or IP"),
]

TYPES = [
    bad_var("port-string", "port: abc", "port", "expected a whole number, got the string 'abc'"),
    bad_var("port-bool", "port: true", "port", "expected a whole number, got the boolean true"),
    bad_var("port-float", "port: 22.5", "port", "expected a whole number"),
    bad_var("port-zero", "port: 0", "port", "from 1 to 65535, got 0"),
    bad_host("port-big", "port: 70000", "port", "from 1 to 65535, got 70000"),
    bad_var("sudo-string", "sudo: 'yes'", "sudo", "expected true or false, got the string 'yes'"),
    bad_var("sudo-null", "sudo:", "sudo", "expected true or false, got nothing"),
    bad_var(
        "units-not-list", "layout: {units: zachot-api.service}", "layout.units", "expected a list"
    ),
    bad_var("user-int", "user: 1000", "user", "quote it"),
    bad_var("user-empty", "user: ''", "user", "must not be empty"),
    bad_var("date", "user: 2024-01-01", "user", "got the date"),
    bad_var("timeout-zero", "connect_timeout: 0", "connect_timeout", "greater than 0"),
    bad_var("timeout-inf", "connect_timeout: .inf", "connect_timeout", "finite"),
    bad_var("lock-negative", "store: {lock_timeout: -1}", "store.lock_timeout", "at least 0"),
    bad_var("policy-typo", "host_key_policy: strcit", "host_key_policy", "did you mean 'strict'?"),
    bad_var(
        "policy-bool", "host_key_policy: false", "host_key_policy", "one of 'strict', 'accept-new'"
    ),
    bad_var("python-tag", "port: !!python/object/apply:os.system [id]", "", "unsupported YAML tag"),
    bad_var("binary-tag", "user: !!binary aGk=", "", "unsupported YAML tag"),
    bad(
        "custom-tag",
        "all:\n  hosts: !hosts  # <-\n    prod:\n",
        "",
        "unsupported YAML tag '!hosts'",
    ),
]

PATHS = [
    bad_var(
        "relative",
        "layout: {env_file: envs/prod/etc/zachot.env}",
        "layout.env_file",
        "absolute path",
    ),
    bad_host("relative-host", "layout: {env_file: zachot.env}", "layout.env_file", "absolute path"),
    bad_var("semicolon", "layout: {root: '/opt/zachot;rm -rf /'}", "layout.root", "';'"),
    bad_var("command-subst", "layout: {logs_dir: '/opt/$(reboot)'}", "layout.logs_dir", "'$'"),
    bad_var("backticks", "layout: {repo_dir: '/opt/`id`'}", "layout.repo_dir", "'`'"),
    bad_var("space", "layout: {venv_dir: '/opt/my venv'}", "layout.venv_dir", "' '"),
    bad_var("glob", "layout: {backup_dir: '/opt/*'}", "layout.backup_dir", "'*'"),
    bad_var("unicode", "layout: {root: /opt/zаchot}", "layout.root", "'а'"),  # Cyrillic а
    bad_var("newline", 'layout: {root: "/opt/zachot\\n/etc"}', "layout.root", "contains a newline"),
    bad_var(
        "tab", 'layout: {unit_dir: "/etc/\\tx"}', "layout.unit_dir", "control character U+0009"
    ),
    bad_var("dotdot", "layout: {backup_dir: /opt/zachot/../../etc}", "layout.backup_dir", "'..'"),
    bad_var(
        "redis-relative", "redis: {data_dir: var/lib/redis}", "redis.data_dir", "absolute path"
    ),
    bad_var(
        "repo-units-abs", "layout: {units_repo_dir: /infra}", "layout.units_repo_dir", "relative"
    ),
    bad_var(
        "repo-units-dotdot", "layout: {units_repo_dir: ../etc}", "layout.units_repo_dir", "'..'"
    ),
    bad_var(
        "repo-units-dash", "layout: {units_repo_dir: -rf}", "layout.units_repo_dir", "relative"
    ),
    bad_var(
        "repo-units-pipe", "layout: {units_repo_dir: 'infra|sh'}", "layout.units_repo_dir", "'|'"
    ),
    bad_var("identity-newline", 'identity_file: "~/.ssh/id\\nx"', "identity_file", "newline"),
    bad_var(
        "store-control", 'store: {path: "/tmp/\\x07b"}', "store.path", "control character U+0007"
    ),
    bad_var("known-hosts-list", "known_hosts: [a]", "known_hosts", "expected a path, got a list"),
]

URLS = [
    bad_var("repo-url-ext", "layout: {repo_url: 'ext::sh -c id'}", "layout.repo_url", "whitespace"),
    bad_var(
        "repo-url-option", "layout: {repo_url: --upload-pack=id}", "layout.repo_url", "https://"
    ),
    bad_var("repo-url-ftp", "layout: {repo_url: 'ftp://x/y.git'}", "layout.repo_url", "https://"),
    bad_var(
        "health-file", "layout: {api_health_url: 'file:///x'}", "layout.api_health_url", "http://"
    ),
    bad_var(
        "health-no-host",
        "layout: {api_health_url: 'http:///h'}",
        "layout.api_health_url",
        "no host",
    ),
    bad_var(
        "redis-http", "redis: {url: 'http://127.0.0.1:6379'}", "redis.url", "redis://, rediss://"
    ),
    bad_var("redis-newline", 'redis: {url: "redis://x\\n"}', "redis.url", "newlines"),
    # env and redis never go off-site in plain text, whatever the inventory says.
    bad_var(
        "offsite-plain-env",
        "backup: {offsite_plain: [logs, env]}",
        "backup.offsite_plain[1]",
        "'env' is not a valid kind sent off-site unencrypted (units or logs)",
    ),
]

YAML_ITSELF = [
    bad("syntax", "all:\n  hosts:\n    prod: {address: [}  # <-\n", "", "YAML syntax error"),
    bad("bad-indent", "all:\n  hosts:\n    prod:\n   address: x  # <-\n", "", "YAML syntax error"),
    bad("undefined-alias", "all:\n  vars: *nope  # <-\n", "", "undefined alias 'nope'"),
    bad("two-documents", "all: {}\n---  # <-\nall: {}\n", "", "single document"),
    bad("raw-control-char", "all:\n  vars:\n    user: a\x01b  # <-\n", "", "U+0001 is not allowed"),
    bad_var("recursive-alias", "layout: {units: &u [a.service, *u]}", "", "contains it"),
]

BAD = SHAPE + UNKNOWN_KEYS + DUPLICATES + NAMES + TYPES + PATHS + URLS + YAML_ITSELF


@pytest.mark.parametrize(("text", "key", "problem"), BAD)
def test_bad_file(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    line = marked_line(text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    error = caught.value
    message = str(error)
    assert (error.key, error.line) == (key, line), message
    prefix = f"{path}:{line}: {key}: " if key else f"{path}:{line}: "
    assert message.startswith(prefix), message
    assert problem in message, message
    assert "\n" not in message
    assert isinstance(error, UsageError)


def test_url_errors_do_not_echo_credentials(tmp_path):
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, "all:\n  vars:\n    redis: {url: 'http://:s3cret@host/0'}\n")
    assert "s3cret" not in str(caught.value)


# --- hostile sizes: refused quickly, before anything is expanded ----------------------


def laughs(levels: int, width: int) -> str:
    lines = ["all:", "  vars:", "    layout:", "      units: &l0 [a.service]"]
    for level in range(1, levels + 1):
        items = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"      required_env_keys{level}: &l{level} [{items}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (laughs(levels=9, width=9), "expand to more than 10000 nodes"),  # 81 aliases, 9**9 nodes
        (laughs(levels=2, width=60), "more than 100 YAML aliases"),
        (
            "all:\n  vars:\n    x: [" + ", ".join(["1"] * 10_001) + "]\n",
            "more than 10000 YAML nodes",
        ),
        ("[" * 200 + "]" * 200 + "\n", "nested more than 64 levels"),
    ],
    ids=["billion-laughs", "many-aliases", "many-nodes", "deep"],
)
def test_hostile_documents_are_refused_fast(tmp_path, text, problem):
    path = write(tmp_path, text)
    started = time.monotonic()
    with pytest.raises(InventoryError, match=problem):
        load_inventory(path)
    assert time.monotonic() - started < 2.0


def test_oversized_file(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text("all: {}\n" + "#" * (1024 * 1024) + "\n")
    with pytest.raises(InventoryError, match="larger than"):
        load_inventory(path)
