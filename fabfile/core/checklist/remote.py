"""One shell script that prints every section the checklist needs, and its pure parsers.

A single round trip: `sudo env ZC_...=... sh -s` reads the script on stdin and
prints `@@zachot:NAME@@` before each section. The script and the Python it runs
(heredocs) are constants sent on stdin, so sudo's log gets one short line per
run; values from the inventory reach it only as ZC_* variables in the argv
(quoted by the transport), never spliced into it. The env file is read for key
NAMES only (sed); its values never leave the box.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from .. import service_user, services
from ..deploys.history import History, parse
from ..deploys.remote import HISTORY
from ..facts import DEPLOYED_REF, parse_deployed_ref
from ..model import Host
from .model import Code, EnvFile, LogFile, LogScan, Pythons, UnitState

MARK = re.compile(r"^@@zachot:([a-z]+)@@$", re.MULTILINE)
PROPS = (
    "Id,LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,ActiveEnterTimestamp,"
    "ActiveEnterTimestampMonotonic,NRestarts,Result,After,FragmentPath"
)
LOGSCAN = (Path(__file__).with_name("logscan.py")).read_text(encoding="utf-8")
PY_END = "ZACHOT_PY_END"  # heredoc delimiter; no line of the Python sources is this
# Tracked files with local changes; --no-optional-locks: reading never rewrites the index.
DIRTY = (
    'git --no-pager -C "$1" --no-optional-locks status --porcelain --untracked-files=no '
    "2>/dev/null | wc -l"
)

# Each section reads only ZC_* variables; `set -f` keeps unit lists from globbing.
SECTIONS = {
    "units": 'systemctl show -p "$ZC_PROPS" -- $ZC_UNITS 2>&1',
    "env": (
        'if [ -e "$ZC_ENV" ] || [ -L "$ZC_ENV" ]; then '
        "stat -c 'stat %a %U %G %s %F' -- \"$ZC_ENV\"; "
        "sed -n 's/^[[:space:]]*\\(export[[:space:]][[:space:]]*\\)\\{0,1\\}"
        '\\([A-Za-z_][A-Za-z0-9_]*\\)[[:space:]]*=.*/key \\2/p\' -- "$ZC_ENV"; '
        # Without root the 0750 directory hides the file: say so, not "missing".
        'elif [ -d "${ZC_ENV%/*}" ] && [ ! -x "${ZC_ENV%/*}" ]; then echo unreadable; '
        "else echo missing; fi"
    ),
    # The repo and the venv are the service user's code: run as that user (service_user.py).
    "code": (
        f'as_service_user sh -c {shlex.quote(DEPLOYED_REF + "; " + DIRTY)} sh "$ZC_REPO" '
        "2>/dev/null"
    ),
    "history": '[ -f "$ZC_HISTORY" ] && tail -n 500 -- "$ZC_HISTORY" || echo "@absent"',
    "python": "python3 -V 2>&1 || echo missing",
    "venv": (
        'as_service_user sh -c \'"$1" -V 2>&1 || echo "failed: exit $?"\' sh "$ZC_VENV/bin/python"'
    ),
    # -B: reading leaves no bytecode behind. The health probe is the restore gates' own.
    "health": f"python3 -B - \"$ZC_URL\" 2>&1 <<'{PY_END}'\n{services.HEALTH_PROBE}\n{PY_END}",
    "logs": (
        f'python3 -B - "$ZC_ENV" "$ZC_LOGS" $ZC_APP_UNITS 2>&1 <<\'{PY_END}\'\n{LOGSCAN}\n{PY_END}'
    ),
}
CHECKLIST = tuple(SECTIONS)
STATUS = ("units", "code", "health")


def command(host: Host, sections: tuple[str, ...] = CHECKLIST) -> tuple[list[str], bytes]:
    """The argv (run it with sudo) and the script for its stdin that gather `sections`."""
    layout = host.layout
    stack = services.stack(host)
    apis = [s.unit for s in stack if s.role == "api"]
    workers = [s.unit for s in stack if s.role == "worker"]
    variables = {
        "ZC_PROPS": PROPS,
        "ZC_UNITS": " ".join(s.unit for s in stack),
        "ZC_APP_UNITS": " ".join(apis + workers),  # the API first: its start is the default
        "ZC_ENV": layout.env_file,
        "ZC_REPO": layout.repo_dir,
        "ZC_HISTORY": HISTORY,
        "ZC_VENV": layout.venv_dir,
        "ZC_URL": layout.api_health_url,
        "ZC_LOGS": layout.logs_dir,
        **service_user.shell_variables(layout),
    }
    script = f"set -f\n{service_user.SHELL_FUNCTION}\n" + "".join(
        f"echo '@@zachot:{n}@@'\n{SECTIONS[n]}\n" for n in sections
    )
    argv = ["env", *(f"{k}={v}" for k, v in variables.items()), "sh", "-s"]
    return argv, script.encode()


def split(stdout: str) -> dict[str, str]:
    """Section name -> its text; a section the script never reached is absent."""
    parts = MARK.split(stdout)
    return {name: text.strip("\n") for name, text in zip(parts[1::2], parts[2::2], strict=False)}


def parse_units(text: str) -> dict[str, UnitState]:
    """`systemctl show` blocks (separated by blank lines) -> unit name -> state."""
    found: dict[str, UnitState] = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        name = props.get("Id")
        if not name:
            continue
        found[name] = UnitState(
            name=name,
            load=props.get("LoadState", "unknown"),
            active=props.get("ActiveState", "unknown"),
            sub=props.get("SubState", ""),
            file_state=props.get("UnitFileState", ""),
            need_reload=props.get("NeedDaemonReload") == "yes",
            entered=props.get("ActiveEnterTimestamp", ""),
            entered_mono=_int(props.get("ActiveEnterTimestampMonotonic")),
            restarts=_int(props.get("NRestarts")),
            result=props.get("Result", ""),
            after=tuple(props.get("After", "").split()),
            fragment=props.get("FragmentPath", ""),
        )
    return found


def parse_env(text: str) -> EnvFile:
    lines = text.splitlines()
    first = lines[0].split(None, 5) if lines else []
    if len(first) < 6 or first[0] != "stat":
        return EnvFile(present=False, readable=text.strip() != "unreadable")
    _, mode, owner, group, size, kind = first
    keys = tuple(ln.split(None, 1)[1] for ln in lines[1:] if ln.startswith("key ") and " " in ln)
    return EnvFile(True, mode, owner, group, _int(size), kind, keys)


def parse_code(text: str, history: str) -> Code:
    lines = text.splitlines()
    ref = parse_deployed_ref("\n".join(lines[:2]))
    dirty = lines[2].strip() if len(lines) > 2 else ""
    return Code(
        commit=ref.commit,
        describe=ref.describe,
        dirty=int(dirty) if dirty.isdigit() and ref.commit else None,
        history=parse_history(history),
    )


def parse_history(text: str) -> History | None:
    """The host's deploy history (the deploy tasks' format); None when there is no file."""
    return None if text.strip() == "@absent" else parse(text)


def parse_python(system: str, venv: str) -> Pythons:
    def version(text: str) -> str | None:
        m = re.search(r"Python \d+\.\d+\S*", text)
        return m.group(0) if m else None

    said = venv.strip().splitlines()[-2:]
    return Pythons(version(system), version(venv), "" if version(venv) else "; ".join(said) or "?")


def parse_health(text: str) -> str:
    said = text.strip().splitlines()
    return said[-1].strip() if said else "no answer"


def parse_logs(text: str) -> LogScan:
    line = text.strip().splitlines()[-1] if text.strip() else ""
    try:
        data = json.loads(line)
    except ValueError:
        why = "python3 is missing" if "not found" in text else (line or "no output")
        return LogScan(error=f"could not scan the logs: {why}")
    if "error" in data:
        return LogScan(error=f"could not scan the logs: {data['error']}")
    return LogScan(
        files=tuple(
            LogFile(
                name=f["name"],
                errors=int(f["errors"]),
                untimed=int(f["untimed"]),
                last=tuple(f["last"]),
                truncated=bool(f["truncated"]),
                since=f["since"],
            )
            for f in data["files"]
        )
    )


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
