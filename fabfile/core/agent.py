"""The program the transport runs on the server with `python3 -c`.

It reads, writes or streams bytes and hashes them on the server side, so each
transfer is checked end to end. Its last stderr line is a TRAILER + JSON
report; anything before it is the wrapped command's own stderr.
"""

from __future__ import annotations

TRAILER = "ZACHOT-AGENT:"

SOURCE = r"""
import grp, hashlib, json, os, pwd, subprocess, sys
T = "ZACHOT-AGENT:"
CHUNK = 1 << 20

def name_of(db, i):
    try:
        return db(i)[0]
    except KeyError:
        return str(i)

def stat_of(st):
    return {"size": st.st_size, "mode": st.st_mode & 0o7777, "uid": st.st_uid,
            "gid": st.st_gid, "owner": name_of(pwd.getpwuid, st.st_uid),
            "group": name_of(grp.getgrgid, st.st_gid), "mtime": st.st_mtime}

def report(**kw):
    sys.stderr.write("\n" + T + json.dumps(kw) + "\n")
    sys.stderr.flush()

def fail(kind, msg, code=3):
    report(ok=False, error=kind, message=msg)
    sys.exit(code)

def pump(src, out, h):
    n = 0
    while True:
        b = src.read(CHUNK)
        if not b:
            return n
        h.update(b)
        out.write(b)
        n += len(b)

def op_read(path):
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        fail("missing", "no such file")
    except PermissionError:
        fail("denied", "permission denied")
    except IsADirectoryError:
        fail("notfile", "is a directory")
    with f:
        st = os.fstat(f.fileno())
        h = hashlib.sha256()
        n = pump(f, sys.stdout.buffer, h)
        sys.stdout.buffer.flush()
    report(ok=True, sha256=h.hexdigest(), sent=n, **stat_of(st))

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True

def drop_stale_parts(d, prefix):
    # A write killed with its connection leaves its temp file; never the real one.
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):]
        if name.startswith(prefix) and pid.isdigit() and not alive(int(pid)):
            try:
                os.unlink(os.path.join(d, name))
            except OSError:
                pass

def op_write(path, mode, owner, group, expect):
    d = os.path.dirname(path) or "/"
    prefix = "." + os.path.basename(path) + ".zachot-part-"
    drop_stale_parts(d, prefix)
    tmp = os.path.join(d, prefix + str(os.getpid()))
    h = hashlib.sha256()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileNotFoundError:
        fail("missing", "no such directory: " + d)
    except PermissionError:
        fail("denied", "permission denied: " + d)
    try:
        with os.fdopen(fd, "wb") as out:
            pump(sys.stdin.buffer, out, h)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != expect:
            fail("checksum", "received bytes do not match the sender's sha256")
        os.chown(tmp, pwd.getpwnam(owner).pw_uid if owner else -1,
                 grp.getgrnam(group).gr_gid if group else -1)
        os.chmod(tmp, int(mode, 8))
        os.replace(tmp, path)
        dfd = os.open(d, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    except KeyError as e:
        fail("nouser", "no such user or group on the server: %s" % e.args[0])
    except OSError as e:
        fail("oserror", "%s: %s" % (d, e.strerror), code=4)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    report(ok=True, sha256=h.hexdigest(), **stat_of(os.stat(path)))

def op_stream(argv):
    try:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE)
    except FileNotFoundError:
        fail("missing", "command not found: " + argv[0])
    h = hashlib.sha256()
    n = pump(p.stdout, sys.stdout.buffer, h)
    sys.stdout.buffer.flush()
    rc = p.wait()
    report(ok=rc == 0, sha256=h.hexdigest(), sent=n, exit=rc,
           error=None if rc == 0 else "command", message="%s exited %d" % (argv[0], rc))

class Hashing:
    def __init__(self, out, h):
        self.out, self.h, self.n = out, h, 0
    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.out.write(b)

def op_pack(*args):
    # Several small files in one round trip, as a tar with their modes and owners.
    import glob, tarfile
    cut = args.index("--") if "--" in args else len(args)
    paths = []
    for p in args[:cut]:
        if not os.path.isfile(p):
            fail("missing", "no such file: " + p)
        paths.append(p)
    for pattern in args[cut + 1:]:
        paths += sorted(x for x in glob.glob(pattern) if os.path.isfile(x))
    h = hashlib.sha256()
    sink = Hashing(sys.stdout.buffer, h)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, dereference=True) as tar:
        for p in paths:
            tar.add(p, arcname=p.lstrip("/"), recursive=False)
    sys.stdout.buffer.flush()
    report(ok=True, sha256=h.hexdigest(), sent=sink.n, files=len(paths))

op, args = sys.argv[1], sys.argv[2:]
ops = {"read": op_read, "write": op_write, "pack": op_pack, "stream": lambda *a: op_stream(list(a))}
ops[op](*args)
"""
