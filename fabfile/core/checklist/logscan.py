"""Error lines in the service logs since the last start; runs ON THE SERVER with `python3 -c`.

Shipped as source (stdlib only, Python 3.7+), so it is also imported and
tested locally. It prints one JSON line: per log file the count of error lines
written since the unit that writes it last started, and the last few, with the
env file's values masked on the server, so no secret leaves the box.

"Since" is the unit's ActiveEnterTimestampMonotonic turned into wall time with
this box's own clocks. A line's time is its leading timestamp (server local
time unless it names a zone); lines without one (traceback bodies) take the
time of the stamped line above them. Lines in a file with no timestamps at all
are counted when the file changed since the start, and reported as untimed.

    python3 -c SOURCE ENV_FILE LOGS_DIR DEFAULT_UNIT [UNIT ...]
"""

import calendar
import json
import os
import re
import stat
import subprocess
import sys
import time

ERROR = re.compile(r"ERROR|CRITICAL|FATAL|Traceback \(most recent call last\)")
STAMP = re.compile(
    r"^\[?(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,6}))?\s*(Z|[+-]\d{2}:?\d{2})?"
)
# The current files and the newest rotation; older rotations predate any start.
CURRENT = re.compile(r"^[^.].*\.(log|err)(\.1)?$")
MAX_BYTES = 8 << 20  # a huge log is scanned from its last 8 MiB
LAST = 3
LINE_LIMIT = 300
MASK = "********"
MIN_SECRET = 6  # as fabfile/core/secrets.py: shorter values and numbers are not secrets
# Root runs this in a directory the service user owns: never follow its links, never
# block on its FIFOs, never read a hard link to someone else's file.
NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
ENV_LIMIT = 1 << 20
TARGET = re.compile(r"^Standard(?:Output|Error)=(?:append|file|truncate):(.+)$")


def stamp(line):
    """Epoch seconds a line says it was written at, or None; second-only stamps
    count as the end of their second, so a line from the start's own second is kept."""
    m = STAMP.match(line)
    if not m:
        return None
    try:
        naive = time.strptime(m.group(1) + " " + m.group(2), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    fraction = float("0." + m.group(3)) if m.group(3) else 1.0
    zone = m.group(4)
    if zone is None:
        return time.mktime(naive) + fraction
    offset = 0
    if zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:]) * 60
        offset = -offset if zone[0] == "-" else offset
    return calendar.timegm(naive) - offset + fraction


def scan_lines(lines, since):
    """(errors since, last few, untimed errors) of a file that changed since the start."""
    count, untimed, last = 0, 0, []
    current = None
    for line in lines:
        seen = stamp(line)
        current = seen if seen is not None else current
        if not ERROR.search(line):
            continue
        if current is None:
            untimed += 1
        elif current < since:
            continue
        count += 1
        last = ([*last, line.rstrip("\n")[:LINE_LIMIT]])[-LAST:]
    return count, last, untimed


def secrets_of(env_file):
    """The env file's values that look like secrets (read here, never printed)."""
    found = []
    try:
        fd, _ = open_regular(env_file)
        with open(fd, encoding="utf-8", errors="replace") as handle:
            for raw in handle.read(ENV_LIMIT).splitlines():
                line = raw.strip()
                if line.startswith("export "):
                    line = line[len("export ") :]
                if "=" not in line or line.startswith("#"):
                    continue
                value = line.split("=", 1)[1].strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                if len(value) >= MIN_SECRET and not value.isdigit():
                    found.append(value)
    except OSError:
        pass
    return sorted(set(found), key=len, reverse=True)


def mask(text, secrets):
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def unit_starts(units, clock=None):
    """unit -> (start epoch, log files it writes) from `systemctl show` and its unit file."""
    now, mono = clock or (time.time(), time.monotonic())
    starts = {}
    for unit in units:
        argv = ["systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "-p", "FragmentPath"]
        try:
            said = subprocess.run([*argv, "--", unit], stdout=subprocess.PIPE, check=False)
            props = dict(
                line.split("=", 1) for line in said.stdout.decode().splitlines() if "=" in line
            )
        except OSError:
            props = {}
        entered = int(props.get("ActiveEnterTimestampMonotonic") or 0)
        since = now - (mono - entered / 1e6) if entered else 0.0
        starts[unit] = (since, targets(props.get("FragmentPath", "")))
    return starts


def targets(fragment):
    """The files a unit's StandardOutput/StandardError append to."""
    found = []
    try:
        with open(fragment, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                m = TARGET.match(line.strip())
                if m:
                    found.append(os.path.realpath(m.group(1).strip()))
    except OSError:
        pass
    return found


def open_regular(name, dir_fd=None, owner=None):
    """(fd, stat) of a regular file, opened without following a link; OSError otherwise.

    owner: in a directory that user can write, a file with several links must be theirs."""
    fd = os.open(name, NO_FOLLOW, dir_fd=dir_fd)
    info = os.fstat(fd)
    foreign = owner is not None and info.st_nlink > 1 and info.st_uid != owner
    if not stat.S_ISREG(info.st_mode) or foreign:
        os.close(fd)
        raise OSError(0, "not a regular file of the log owner", name)
    return fd, info


def read_tail(fd, size):
    with open(fd, "rb") as handle:
        if size > MAX_BYTES:
            handle.seek(size - MAX_BYTES)
            handle.readline()  # drop the partial first line
        return handle.read().decode("utf-8", "replace").splitlines()


def scan(env_file, logs_dir, units):
    starts = unit_starts(units)
    default = starts[units[0]][0] if units else 0.0
    writer = {path: since for since, paths in starts.values() for path in paths}
    secrets = secrets_of(env_file)
    files = []
    # O_NOFOLLOW: a logs dir swapped for a link to a root-only directory is not read.
    where = os.open(logs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in sorted(os.listdir(where)):
            since = writer.get(os.path.realpath(os.path.join(logs_dir, name)), default)
            found = scan_file(where, name, since, secrets)
            if found:
                files.append(found)
    finally:
        os.close(where)
    return {"files": files}


def scan_file(where, name, since, secrets):
    """One log's report; None for a name that is not a current log, a link, a FIFO, a hard
    link to another user's file, or a log not written since the start."""
    if not CURRENT.match(name):
        return None
    try:
        fd, info = open_regular(name, where, os.fstat(where).st_uid)
    except OSError:
        return None
    if info.st_mtime < since:
        os.close(fd)
        return None  # nothing written to it since the start
    count, last, untimed = scan_lines(read_tail(fd, info.st_size), since)
    return {
        "name": name,
        "errors": count,
        "untimed": untimed,
        "last": [mask(line, secrets) for line in last],
        "truncated": info.st_size > MAX_BYTES,
        "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)),
    }


def main(argv):
    if len(argv) < 3:
        print(json.dumps({"error": "usage: ENV_FILE LOGS_DIR UNIT [UNIT ...]"}))
        return 2
    try:
        print(json.dumps(scan(argv[0], argv[1], argv[2:])))
    except OSError as exc:
        print(json.dumps({"error": f"{exc.filename or argv[1]}: {exc.strerror}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
