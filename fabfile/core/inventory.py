"""Read inventory.yml (Ansible's YAML inventory shape) into frozen Host values.

    all:
      vars: {...}                  # defaults for every host
      hosts: {name: {...} | null}
      children:
        group: {vars: {...}, hosts: {...}, children: {...}}

Groups and precedence are Ansible's: a group named in several places (at the top and
under another group's children) is one group; all.vars < group vars by depth (a child
beats its parent; groups of one depth by name) < the host's own vars. The sections
layout/redis/dramatiq/store/backup merge key by key (Ansible would replace the whole dict).
Ansible's connection variables (ansible_host, ansible_port, ansible_user,
ansible_ssh_private_key_file, ansible_become) are read as address, port, user,
identity_file and sudo; other ansible_* variables are ignored with a note.

We compose the YAML into nodes and build values ourselves instead of calling
yaml.load: nodes keep line numbers for error messages, duplicate keys are still
visible (yaml.load silently keeps the last one), and nothing is constructed
until the alias/size limits have been checked. Every problem becomes one
InventoryError naming the file, the dotted key path and the line.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from . import ansible_source, output
from .errors import InventoryError, UnknownHostError, UsageError
from .model import Host

# libyaml's parser when PyYAML was built with it: the same events, nodes and marks, at a
# tenth of the pure-Python parser's cost (it read the inventory twice on every task's start).
# Its messages are terser ("found undefined alias"), so a broken file is read again by
# the pure parser for the error message (_worded).
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ENV_VAR = "ZACHOT_INVENTORY"
# Searched in this order after $ZACHOT_INVENTORY and the config key zachot.inventory.
# Never next to the package: an installed package lives in site-packages.
SEARCH_PATHS: tuple[Path, ...] = (Path("inventory.yml"), Path("~/.config/zachot/inventory.yml"))

# Limits that stop hostile or broken files before any alias is expanded.
MAX_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_NODES = 10_000
MAX_DEPTH = 64  # PyYAML's composer recurses; this keeps it far from RecursionError


def inventory_path(config_value: str | None = None) -> Path:
    """$ZACHOT_INVENTORY, else config `zachot.inventory`, else the first of SEARCH_PATHS
    that exists (./inventory.yml, then ~/.config/zachot/inventory.yml)."""
    chosen = os.environ.get(ENV_VAR) or config_value
    if chosen:
        return Path(chosen).expanduser()
    for candidate in SEARCH_PATHS:
        if candidate.expanduser().exists():
            return candidate.expanduser().absolute()
    looked = ", ".join(
        [f"${ENV_VAR} (unset)", "config zachot.inventory (unset)"]
        + [str(c.expanduser().absolute()) for c in SEARCH_PATHS]
    )
    raise UsageError(
        f"no inventory file found; looked at {looked}; create one there or {_HOW_TO_CHOOSE}"
    )


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: dict[str, Host]  # file order
    groups: dict[str, tuple[str, ...]]  # recursive members; includes "all"

    def names(self) -> list[str]:
        """Host names, then group names: what an operator may pass to -H."""
        return [*self.hosts, *self.groups]

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise UnknownHostError(name, self.names()) from None

    def resolve(self, pattern: str) -> list[Host]:
        """Hosts for a host name, a group name or a comma list of them; in order, no duplicates."""
        items = [item.strip() for item in pattern.split(",") if item.strip()]
        if not items:
            raise UnknownHostError(pattern, self.names())
        chosen: dict[str, Host] = {}
        for item in items:
            if item in self.hosts:
                names: tuple[str, ...] = (item,)
            elif item in self.groups:
                names = self.groups[item]
            else:
                raise UnknownHostError(item, self.names())
            for name in names:
                chosen.setdefault(name, self.hosts[name])
        return list(chosen.values())


def load_inventory(path: Path) -> Inventory:
    """Parse and validate an inventory file; every problem raises one InventoryError.
    Ansible variables the toolkit does not use are noted on stderr, once per key."""
    path = Path(path)
    text = None if path.is_dir() else _read(path)
    if ansible_source.is_ansible_source(path, text):
        # INI, a plugin's config, a script or a directory: as ansible-inventory reads it,
        # in our shape; errors name keys but no lines (the lines are not the file's).
        loader = _Loader(path, generated=True)
        inventory = loader.load(ansible_source.as_our_yaml(path))
    else:
        loader = _Loader(path)
        inventory = loader.load(text)
    for name in loader.notes:
        output.warn(f"{path}: {name} is an Ansible variable this toolkit does not use; ignored")
    return inventory


# --- the schema, derived from model.py's type hints --------------------------------

_HOST_HINTS = get_type_hints(Host)
# Sections are the dataclass-typed fields of Host (layout, redis, dramatiq, store).
_SECTIONS: dict[str, type] = {
    f.name: _HOST_HINTS[f.name]
    for f in dataclasses.fields(Host)
    if dataclasses.is_dataclass(_HOST_HINTS[f.name])
}
_SECTION_HINTS = {name: get_type_hints(cls) for name, cls in _SECTIONS.items()}
# name and groups come from the structure of the file, never from vars.
_FLAT_KEYS = [
    f.name
    for f in dataclasses.fields(Host)
    if f.name not in _SECTIONS and f.name not in ("name", "groups")
]
_VARS_KEYS = [*_FLAT_KEYS, *_SECTIONS]
_GROUP_KEYS = ["vars", "hosts", "children"]

# Hints for keys that exist elsewhere: a section field written at the top of vars.
_VARS_HINTS = {
    field: f"{section}.{field}" for section, hints in _SECTION_HINTS.items() for field in hints
}

# --- value checks, keyed by (section, field); "" is the flat host section ----------
# Each returns a problem or None. For list fields the check applies to each item.

Check = Callable[[Any], "str | None"]

_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_UNIT = re.compile(r"[A-Za-z0-9@._-]+\.service")
_SERVICE_USER = re.compile(r"[a-z_][a-z0-9_-]*")
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DRAMATIQ_NAME = re.compile(r"[A-Za-z0-9._-]+")
_AGE_RECIPIENT = re.compile(r"age1[0-9a-z]{58}")
_CRON_SCHEDULE = re.compile(r"@(daily|weekly|monthly)|[0-9*/,-]+( [0-9*/,-]+){4}")
_ADDRESS = re.compile(r"[A-Za-z0-9.:-]+")
_SCP_URL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*@[A-Za-z0-9][A-Za-z0-9.-]*:\S+")
# Remote paths end up in shell commands; quoting protects them, this is the second belt.
_REMOTE_PATH_CHAR = re.compile(r"[A-Za-z0-9._/+@:=,-]")


def _control_char(value: str) -> str | None:
    for char in value:
        if char in "\n\r":
            return "contains a newline"
        if unicodedata.category(char).startswith("C"):
            return f"contains the control character U+{ord(char):04X}"
    return None


def _pattern(regex: re.Pattern[str], what: str, allowed: str) -> Check:
    def check(value: str) -> str | None:
        if regex.fullmatch(value):
            return None
        return _control_char(value) or f"{value!r} is not a valid {what} ({allowed})"

    return check


def _remote_path(absolute: bool) -> Check:
    def check(value: str) -> str | None:
        if problem := _control_char(value):
            return problem
        if absolute and not value.startswith("/"):
            return f"must be an absolute path (starting with '/'), got {value!r}"
        if not absolute and (value.startswith("/") or value.startswith("-") or not value):
            return f"must be relative to layout.repo_dir (no leading '/' or '-'), got {value!r}"
        if ".." in value.split("/"):
            return f"must not contain a '..' component, got {value!r}"
        bad = sorted({c for c in value if not _REMOTE_PATH_CHAR.fullmatch(c)})
        if bad:
            shown = " ".join(repr(c) for c in bad)
            return (
                f"contains {shown}; remote paths allow only letters, digits and . _ / + @ : = , -"
            )
        return None

    return check


def _url(schemes: tuple[str, ...], scp_like: bool = False) -> Check:
    # Messages do not echo the URL: it may carry credentials (redis://:password@host).
    def check(value: str) -> str | None:
        if _control_char(value) or any(c.isspace() for c in value):
            return "must not contain whitespace, newlines or control characters"
        if scp_like and _SCP_URL.fullmatch(value):
            return None
        try:
            parts = urlsplit(value)
        except ValueError:
            return "is not a valid URL"
        wanted = ", ".join(f"{s}://" for s in schemes) + (" or user@host:path" if scp_like else "")
        if parts.scheme not in schemes:
            return f"must be a URL starting with one of: {wanted}"
        if parts.scheme not in ("file", "unix") and not parts.hostname:
            return "URL has no host"
        return None

    return check


def _address(value: str) -> str | None:
    if _ADDRESS.fullmatch(value) and not value.startswith("-"):
        return None
    return _control_char(value) or (
        f"{value!r} is not a host name or IP address (letters, digits, . : -; no leading '-')"
    )


def _at_least(low: float, inclusive: bool = True) -> Check:
    def check(value: float) -> str | None:
        ok = value >= low if inclusive else value > low
        return (
            None
            if ok
            else f"must be {'at least' if inclusive else 'greater than'} {low:g}, got {value:g}"
        )

    return check


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"must be a port number from 1 to 65535, got {value}"


_ABSOLUTE = _remote_path(absolute=True)
_UNIT_CHECK = _pattern(
    _UNIT, "systemd unit name", "letters, digits, @ . _ - and ending in .service"
)
_ENV_KEY_CHECK = _pattern(
    _ENV_KEY, "environment variable name", "letters, digits and _; not starting with a digit"
)

_CHECKS: dict[tuple[str, str], Check] = {
    ("", "address"): _address,
    ("", "port"): _port,
    ("", "user"): _pattern(
        _SSH_USER, "user name", "letters, digits, . _ -; not starting with '.' or '-'"
    ),
    ("", "sudo_password_env"): _ENV_KEY_CHECK,
    ("", "connect_timeout"): _at_least(0, inclusive=False),
    ("", "replaces"): _pattern(
        _HOST_NAME, "host name", "letters, digits, . _ -; starting with a letter or digit"
    ),
    ("restore", "find_links"): _url(("http", "https")),
    ("restore", "index_url"): _url(("http", "https")),
    ("layout", "root"): _ABSOLUTE,
    ("layout", "env_file"): _ABSOLUTE,
    ("layout", "unit_dir"): _ABSOLUTE,
    ("layout", "units"): _UNIT_CHECK,
    ("layout", "logs_dir"): _ABSOLUTE,
    ("layout", "repo_dir"): _ABSOLUTE,
    ("layout", "repo_url"): _url(("https", "http", "ssh", "git", "file"), scp_like=True),
    ("layout", "venv_dir"): _ABSOLUTE,
    ("layout", "service_user"): _pattern(
        _SERVICE_USER, "service user", "lowercase letters, digits, _ -"
    ),
    ("layout", "backup_dir"): _ABSOLUTE,
    ("layout", "api_health_url"): _url(("http", "https")),
    ("layout", "required_env_keys"): _ENV_KEY_CHECK,
    ("layout", "units_repo_dir"): _remote_path(absolute=False),
    ("redis", "unit"): _UNIT_CHECK,
    ("redis", "data_dir"): _ABSOLUTE,
    ("redis", "url"): _url(("redis", "rediss", "unix")),
    ("dramatiq", "namespace"): _pattern(
        _DRAMATIQ_NAME, "Dramatiq namespace", "letters, digits, . _ -"
    ),
    ("dramatiq", "queues"): _pattern(
        _DRAMATIQ_NAME, "Dramatiq queue name", "letters, digits, . _ -"
    ),
    ("dramatiq", "heartbeat_timeout"): _at_least(0, inclusive=False),
    ("store", "lock_timeout"): _at_least(0),
    ("backup", "max_age_days"): _at_least(0, inclusive=False),
    ("backup", "keep_last"): _at_least(0),
    ("backup", "keep_daily"): _at_least(0),
    ("backup", "keep_weekly"): _at_least(0),
    ("backup", "keep_monthly"): _at_least(0),
    ("backup", "server_keep_last"): _at_least(1),
    ("backup", "read_budget_mib"): _at_least(0),
    ("backup", "read_count"): _at_least(0),
    ("backup", "age_recipients"): _pattern(
        _AGE_RECIPIENT, "age recipient", "an age public key: age1 and 58 letters or digits"
    ),
    ("backup", "offsite_plain"): _pattern(
        re.compile(r"units|logs"), "kind sent off-site unencrypted", "units or logs"
    ),
    ("backup", "offsite_host"): _pattern(
        _HOST_NAME, "host name", "letters, digits, . _ -; starting with a letter or digit"
    ),
    ("backup", "offsite_dir"): _remote_path(absolute=False),
    ("backup", "offsite_s3_endpoint"): _url(("http", "https")),
    ("backup", "offsite_s3_bucket"): _pattern(
        re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"), "S3 bucket name", "a-z 0-9 . -"
    ),
    ("backup", "offsite_s3_region"): _pattern(
        re.compile(r"[a-z0-9-]{1,40}"), "region", "a-z 0-9 -"
    ),
    ("backup", "offsite_retain_days"): _at_least(0),
    ("backup", "routine_overdue_hours"): _at_least(0),
    ("backup", "healthcheck_url"): _url(("http", "https")),
    ("backup", "cron_schedule"): _pattern(
        _CRON_SCHEDULE, "cron schedule", "five cron fields such as '0 2 * * 0', or @weekly"
    ),
}
_NON_EMPTY_LISTS = {("dramatiq", "queues")}
_NAME_CHECK = _pattern(
    _HOST_NAME, "name", "letters, digits, . _ -; starting with a letter or digit"
)

# --- reading --------------------------------------------------------------------

_HOW_TO_CHOOSE = (
    f"set {ENV_VAR}=/path/to/inventory.yml or the config key zachot.inventory to use another file"
)


def _read(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InventoryError(path, "", f"inventory file not found; {_HOW_TO_CHOOSE}") from None
    except OSError as exc:
        raise InventoryError(
            path, "", f"cannot read inventory file ({exc.strerror or exc}); {_HOW_TO_CHOOSE}"
        ) from None
    if len(data) > MAX_BYTES:
        raise InventoryError(path, "", f"inventory file is larger than {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InventoryError(path, "", "file is not valid UTF-8", line) from None


# --- the loader -----------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = _TAG + "merge"
_KNOWN_TAGS = {
    _TAG + kind
    for kind in ("null", "bool", "int", "float", "str", "timestamp", "seq", "map", "merge")
}
_SCALARS = yaml.constructor.SafeConstructor()  # only for its int/float/bool parsing


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _TAG + "null"


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    kind = node.tag.removeprefix(_TAG)
    if kind == "null":
        return "nothing (null)"
    if kind == "str":
        return f"the string {node.value!r}"
    names = {
        "bool": "the boolean",
        "int": "the integer",
        "float": "the number",
        "timestamp": "the date",
    }
    return f"{names[kind]} {node.value}" if kind in names else f"a value tagged {node.tag!r}"


def _unknown_key(name: str, valid: list[str], hints: dict[str, str]) -> str:
    message = f"unknown key {name!r}"
    # A known key in the wrong place (env_file outside layout) beats a spelling guess.
    close = [hints[name]] if name in hints else difflib.get_close_matches(name, valid, n=1)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    return f"{message}; valid keys: {', '.join(valid)}"


@dataclass
class _Group:
    name: str
    line: int  # first mention
    vars: dict[str, Any] = dataclasses.field(default_factory=dict)
    vars_line: int | None = None  # where the (only) non-empty vars are
    # Direct members in file order: hosts, and child groups with where they are named.
    entries: list[str | _ChildRef] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class _ChildRef:
    name: str
    key: str
    line: int


@dataclass
class _HostDef:
    first_line: int
    vars: dict[str, Any]
    vars_line: int | None = None  # where the (only) non-empty definition is


class _Loader:
    def __init__(self, path: Path, generated: bool = False) -> None:
        self.path, self.generated = path, generated
        self.base = path.expanduser().absolute().parent  # relative local paths start here
        self.groups: dict[str, _Group] = {}  # first mention order: "all" first
        self.hosts: dict[str, _HostDef] = {}
        self.notes: dict[str, None] = {}  # ansible_* variables ignored, once per key

    def fail(
        self, key: str, problem: str, node: Node | None = None, line: int | None = None
    ) -> NoReturn:
        if self.generated:
            node, line, problem = None, None, f"{problem} (as ansible-inventory reads it)"
        raise InventoryError(self.path, key, problem, _line(node) if node is not None else line)

    # -- document --

    def load(self, text: str) -> Inventory:
        self.check_limits(text)
        try:
            root = yaml.compose(text, Loader=LOADER)
        except yaml.YAMLError as exc:
            self.yaml_error(exc, text)
        if root is None:
            self.fail("", "inventory file is empty; it needs a top-level 'all:' mapping", line=1)
        self.check_nodes(root)
        if not isinstance(root, MappingNode):
            self.fail(
                "", f"expected a mapping with the top-level key 'all', got {_describe(root)}", root
            )
        top = {name: (k, v) for name, k, v in self.items(root, "", "top-level keys")}
        if not top:
            self.fail("", "missing the top-level key 'all'", root)
        for name, (key_node, _) in top.items():
            # Other top-level keys are groups, as in Ansible; 'alll', 'al' or 'All' is a typo.
            if name != "all" and re.fullmatch(r"a+l+", name, re.IGNORECASE):
                self.fail(name, _unknown_key(name, ["all"], {}), key_node)
        all_key, all_node = top.get("all", (root, ScalarNode(_TAG + "null", "")))
        self.group("all", all_node, "all", _line(all_key))
        for name, (key_node, node) in top.items():
            if name != "all":
                self.check_group_name(name, key_node, name)
                self.groups["all"].entries.append(_ChildRef(name, name, _line(key_node)))
                self.group(name, node, name, _line(key_node))
        return self.build()

    def yaml_error(self, exc: yaml.YAMLError, text: str) -> NoReturn:
        exc = _worded(exc, text)
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
            line = text[: exc.position].count("\n") + 1
            self.fail("", f"character U+{exc.character:04X} is not allowed in YAML", line=line)
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None)
        context = getattr(exc, "context", None)
        message = " ".join(str(part) for part in (context, problem) if part) or str(exc)
        self.fail("", f"YAML syntax error: {message}", line=mark.line + 1 if mark else None)

    def check_limits(self, text: str) -> None:
        # Counted on the event stream, before any node exists, so a bomb costs nothing.
        aliases = nodes = depth = 0
        try:
            for event in yaml.parse(text, Loader=LOADER):
                if isinstance(event, yaml.NodeEvent):
                    nodes += 1
                if isinstance(event, yaml.AliasEvent):
                    aliases += 1
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                elif isinstance(event, yaml.CollectionEndEvent):
                    depth -= 1
                line = event.start_mark.line + 1
                if aliases > MAX_ALIASES:
                    self.fail(
                        "", f"more than {MAX_ALIASES} YAML aliases; refusing the file", line=line
                    )
                if nodes > MAX_NODES:
                    self.fail("", f"more than {MAX_NODES} YAML nodes; refusing the file", line=line)
                if depth > MAX_DEPTH:
                    self.fail(
                        "",
                        f"nested more than {MAX_DEPTH} levels deep; refusing the file",
                        line=line,
                    )
        except yaml.YAMLError as exc:
            self.yaml_error(exc, text)

    def check_nodes(self, root: Node) -> None:
        # A few aliases of aliases ("billion laughs") expand exponentially: measure the
        # expanded size on the shared node graph (memoised, so this stays cheap).
        # Explicit tags (!!python/object, !!binary, ...) are refused here, once for all.
        sizes: dict[int, int] = {}
        active: set[int] = set()

        def size(node: Node) -> int:
            if id(node) in sizes:
                return sizes[id(node)]
            if id(node) in active:
                self.fail(
                    "", "a YAML alias refers to a node that contains it; refusing the file", node
                )
            if node.tag not in _KNOWN_TAGS:
                self.fail("", f"unsupported YAML tag {node.tag!r}", node)
            active.add(id(node))
            children: list[Node] = []
            if isinstance(node, SequenceNode):
                children = node.value
            elif isinstance(node, MappingNode):
                children = [part for pair in node.value for part in pair]
            total = 1 + sum(size(child) for child in children)
            if total > MAX_NODES:
                self.fail(
                    "",
                    f"YAML aliases expand to more than {MAX_NODES} nodes; refusing the file",
                    node,
                )
            active.discard(id(node))
            sizes[id(node)] = total
            return total

        size(root)

    # -- mappings --

    def items(self, node: Node, key: str, what: str) -> Iterator[tuple[str, Node, Node]]:
        """(name, key node, value node) of a mapping, in file order; null counts as empty.

        Rejects duplicate keys and non-scalar keys; applies YAML merge keys (<<: *x),
        where explicit keys win over merged ones.
        """
        if _is_null(node):
            return iter(())
        if not isinstance(node, MappingNode):
            self.fail(key, f"expected a mapping of {what}, got {_describe(node)}", node)
        explicit: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        self.fail(
                            key, f"'<<' must merge a mapping, got {_describe(source)}", source
                        )
                    for name, k, v in self.items(source, key, what):
                        merged.setdefault(name, (k, v))
                continue
            if not isinstance(key_node, ScalarNode):
                self.fail(key, f"keys must be plain names, got {_describe(key_node)}", key_node)
            name = key_node.value
            if name in explicit:
                first = _line(explicit[name][0])
                self.fail(
                    _join(key, name), f"duplicate key {name!r} (first at line {first})", key_node
                )
            explicit[name] = (key_node, value_node)
        merged = {name: pair for name, pair in merged.items() if name not in explicit}
        return ((name, k, v) for name, (k, v) in (explicit | merged).items())

    # -- structure: groups and hosts --

    def group(self, name: str, node: Node, key: str, line: int) -> None:
        """Record a group mention. As in Ansible, a group named in several places (under
        all.children and under another group's children) is one group: its hosts and
        children add up; its vars may be given in one place only."""
        group = self.groups.setdefault(name, _Group(name, line))
        for part, key_node, value in self.items(node, key, "'vars', 'hosts' and 'children'"):
            part_key = _join(key, part)
            if part == "vars":
                group_vars = self.vars(value, part_key)
                if not group_vars:
                    continue
                if group.vars_line is not None:
                    self.fail(
                        part_key,
                        f"group {name!r} has vars already (line {group.vars_line});"
                        " give a group's vars in one place",
                        key_node,
                    )
                group.vars, group.vars_line = group_vars, _line(key_node)
            elif part == "hosts":
                for host, host_key, host_vars in self.items(value, part_key, "host names"):
                    self.host(host, host_key, host_vars, _join(part_key, host))
                    group.entries.append(host)
            elif part == "children":
                for child, child_key, child_node in self.items(value, part_key, "group names"):
                    child_path = _join(part_key, child)
                    self.check_group_name(child, child_key, child_path)
                    group.entries.append(_ChildRef(child, child_path, _line(child_key)))
                    self.group(child, child_node, child_path, _line(child_key))
            elif part in _VARS_KEYS or part in _VARS_HINTS or part.startswith("ansible_"):
                self.fail(
                    part_key, f"unknown key {part!r}; host variables go under 'vars:'", key_node
                )
            else:
                self.fail(part_key, _unknown_key(part, _GROUP_KEYS, {}), key_node)

    def check_group_name(self, name: str, key_node: Node, key: str) -> None:
        if problem := _NAME_CHECK(name):
            self.fail(key, f"group {problem}", key_node)
        if name == "all":
            self.fail(key, "'all' is the implicit top group; it cannot be a child", key_node)
        if name in self.hosts:
            first = self.hosts[name].first_line
            self.fail(
                key,
                f"group {name!r} has the same name as a host (line {first}); names must be unique",
                key_node,
            )

    def host(self, name: str, key_node: Node, node: Node, key: str) -> None:
        if problem := _NAME_CHECK(name):
            self.fail(key, f"host {problem}", key_node)
        if name == "all":
            self.fail(key, "'all' is reserved for the group of all hosts", key_node)
        if name in self.groups:
            first = self.groups[name].line
            self.fail(
                key,
                f"host {name!r} has the same name as a group (line {first}); names must be unique",
                key_node,
            )
        host_vars = self.vars(node, key)
        known = self.hosts.setdefault(name, _HostDef(_line(key_node), {}))
        non_empty = isinstance(node, MappingNode) and bool(node.value)
        if not non_empty:
            return  # a bare mention adds the host to this group and nothing else
        if known.vars_line is not None:
            self.fail(
                key, f"host {name!r} is defined twice (first at line {known.vars_line})", key_node
            )
        known.vars, known.vars_line = host_vars, _line(key_node)

    # -- vars: type-checked values --

    def vars(self, node: Node, key: str) -> dict[str, Any]:
        """Converted host variables; sections become dicts of their own."""
        out: dict[str, Any] = {}
        spelled: dict[str, str] = {}  # our key -> the name it was given under here
        for name, key_node, value in self.items(node, key, "host variables"):
            name_key = _join(key, name)
            field = ansible_source.EQUIVALENTS.get(name, name)
            if name in _SECTIONS:
                out[name] = self.section(name, value, name_key)
            elif field in _FLAT_KEYS:
                converted = self.convert(_HOST_HINTS[field], value, name_key, ("", field))
                if field in out and out[field] != converted:
                    self.fail(
                        name_key,
                        f"{name!r} and {spelled[field]!r} are both given with different values;"
                        " keep one",
                        key_node,
                    )
                out[field], spelled[field] = converted, name
            elif name.startswith("ansible_"):
                self.notes.setdefault(name)
            else:
                self.fail(name_key, _unknown_key(name, _VARS_KEYS, _VARS_HINTS), key_node)
        return out

    def section(self, section: str, node: Node, key: str) -> dict[str, Any]:
        hints = _SECTION_HINTS[section]
        out: dict[str, Any] = {}
        for name, key_node, value in self.items(node, key, f"{section} settings"):
            name_key = _join(key, name)
            if name not in hints:
                self.fail(name_key, _unknown_key(name, list(hints), {}), key_node)
            out[name] = self.convert(hints[name], value, name_key, (section, name))
        return out

    def convert(self, hint: Any, node: Node, key: str, field: tuple[str, str]) -> Any:
        """Build a value of type `hint` from a node; the one place types are enforced."""
        origin = get_origin(hint)
        if origin in (Union, types.UnionType):
            options = [arg for arg in get_args(hint) if arg is not type(None)]
            if _is_null(node) and len(options) < len(get_args(hint)):
                return None  # explicit null: unset, fall back (e.g. to ~/.ssh/config)
            (hint,) = options  # model.py only uses `X | None`
            return self.convert(hint, node, key, field)
        if origin is tuple:
            return self.convert_list(get_args(hint)[0], node, key, field)
        value = self.scalar(hint, node, key)
        check = _CHECKS.get(field)
        if check is not None and (problem := check(value)):
            self.fail(key, problem, node)
        return value

    def convert_list(
        self, item_hint: Any, node: Node, key: str, field: tuple[str, str]
    ) -> tuple[Any, ...]:
        if not isinstance(node, SequenceNode):
            self.fail(key, f"expected a list (e.g. [a, b]), got {_describe(node)}", node)
        if not node.value and field in _NON_EMPTY_LISTS:
            self.fail(key, "must list at least one item", node)
        values: list[Any] = []
        for index, item in enumerate(node.value):
            value = self.convert(item_hint, item, f"{key}[{index}]", field)
            if value in values:
                self.fail(f"{key}[{index}]", f"{value!r} is listed twice", item)
            values.append(value)
        return tuple(values)

    def scalar(self, hint: Any, node: Node, key: str) -> Any:
        kind = node.tag.removeprefix(_TAG) if isinstance(node, ScalarNode) else ""
        if get_origin(hint) is Literal:
            choices = get_args(hint)
            if kind == "str" and node.value in choices:
                return node.value
            shown = ", ".join(repr(c) for c in choices)
            got = _describe(node)
            close = difflib.get_close_matches(node.value, choices, n=1) if kind == "str" else []
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(key, f"must be one of {shown}, got {got}{suggestion}", node)
        if hint is bool and kind == "bool":
            return _SCALARS.construct_yaml_bool(node)
        if hint is int and kind == "int":
            return _SCALARS.construct_yaml_int(node)
        if hint is float and kind in ("int", "float"):
            parse = _SCALARS.construct_yaml_int if kind == "int" else _SCALARS.construct_yaml_float
            number = float(parse(node))
            if not math.isfinite(number):
                self.fail(key, f"must be a finite number, got {node.value}", node)
            return number
        if hint is str and kind == "str":
            if not node.value:
                self.fail(key, "must not be empty", node)
            return node.value
        if hint is Path and kind == "str":
            return self.local_path(node, key)
        wanted = {
            bool: "true or false",
            int: "a whole number",
            float: "a number",
            str: "a string",
            Path: "a path",
        }
        if hint not in wanted:
            raise TypeError(
                f"inventory cannot convert type {hint!r} (field {key})"
            )  # a model.py change
        hint_text = (
            " (quote it to make it a string)"
            if hint in (str, Path) and kind in ("int", "float", "bool")
            else ""
        )
        self.fail(key, f"expected {wanted[hint]}, got {_describe(node)}{hint_text}", node)

    def local_path(self, node: ScalarNode, key: str) -> Path:
        value = node.value
        if not value:
            self.fail(key, "must not be empty", node)
        if problem := _control_char(value):
            self.fail(key, problem, node)
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    # -- result --

    def build(self) -> Inventory:
        order = self.parents_first()
        members: dict[str, list[str]] = {}
        for name in reversed(order):  # children first: each group's hosts are built once
            found = [
                entry if isinstance(entry, str) else member
                for entry in self.groups[name].entries
                for member in ([entry] if isinstance(entry, str) else members[entry.name])
            ]
            members[name] = list(dict.fromkeys(found))
        depths = dict.fromkeys(order, 0)
        for name in order:  # the longest path from 'all', as Ansible counts a group's depth
            for entry in self.groups[name].entries:
                if isinstance(entry, _ChildRef):
                    depths[entry.name] = max(depths[entry.name], depths[name] + 1)
        # Ansible's precedence: all < groups by depth (a child beats its parent), then by
        # name between groups of one depth < the host's own vars.
        ordered = sorted(self.groups.values(), key=lambda g: (depths[g.name], g.name))
        sets = {name: set(hosts) for name, hosts in members.items()}
        hosts = {
            name: self.build_host(name, known, sets, ordered) for name, known in self.hosts.items()
        }
        # Ansible's 'ungrouped' is implicit: the hosts in no other group. Naming it only
        # puts hosts (and its vars) there; it is not a group of its own here.
        shown = {name: tuple(members[name]) for name in self.groups if name != _UNGROUPED}
        return Inventory(self.path, hosts, shown)

    def parents_first(self) -> list[str]:
        """The groups in topological order from 'all' (an iterative depth-first walk, so a
        long chain of references cannot exhaust the stack); a cycle is one error naming the
        reference that closes it."""
        finished: list[str] = []
        state: dict[str, str] = {}  # "open" while on the walk's path, then "done"
        path: list[tuple[str, Iterator[str | _ChildRef]]] = []

        def enter(name: str) -> None:
            state[name] = "open"
            path.append((name, iter(self.groups[name].entries)))

        enter("all")
        while path:
            name, entries = path[-1]
            child = next((e for e in entries if isinstance(e, _ChildRef)), None)
            if child is None:
                path.pop()
                state[name] = "done"
                finished.append(name)
            elif state.get(child.name) == "open":
                names = [open_name for open_name, _ in path]
                cycle = " -> ".join([*names[names.index(child.name) :], child.name])
                self.fail(child.key, f"groups contain each other ({cycle})", line=child.line)
            elif child.name not in state:
                enter(child.name)
        return finished[::-1]

    def build_host(
        self, name: str, known: _HostDef, members: dict[str, set[str]], ordered: list[_Group]
    ) -> Host:
        flat: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
        layers = [group.vars for group in ordered if name in members[group.name]]
        for layer in [*layers, known.vars]:
            for field, value in layer.items():
                if field in sections:
                    sections[field].update(value)  # sections merge key by key
                else:
                    flat[field] = value
        built = {section: _SECTIONS[section](**values) for section, values in sections.items()}
        groups = tuple(
            g for g in self.groups if g not in ("all", _UNGROUPED) and name in members[g]
        )
        return Host(name=name, groups=groups, **flat, **built)


_UNGROUPED = "ungrouped"


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _worded(exc: yaml.YAMLError, text: str) -> yaml.YAMLError:
    """The pure-Python parser's error for text, which names what is wrong (an undefined
    alias by its name); exc if that parser finds nothing. Composing shares an alias's node,
    never expands it, and the limits held up to the error, so this costs no more than the
    first reading."""
    if LOADER is yaml.SafeLoader:
        return exc
    try:
        yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as worded:
        return worded
    return exc
