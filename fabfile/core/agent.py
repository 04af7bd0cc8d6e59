"""The program the transport runs on the server with `python3 -IS -c`, as root.

It reads, writes or streams bytes and hashes them on the server side, so each
transfer is checked end to end. Its last stderr line is a TRAILER + JSON
report; anything before it is the wrapped command's own stderr.

Root must not be steered by the service user, who can write many of the paths it
touches (README, "Threat model"). So every path is walked from "/" one component
at a time with O_NOFOLLOW: a link is followed only where no other user could have
planted it (a root-owned directory nobody else can write, or a root-owned link in a
sticky one). The file found must be a regular file (opened O_NONBLOCK: a FIFO cannot
hang it), not a hard link to someone else's file in a directory others can write,
and small files are capped. Files are created with O_EXCL|O_NOFOLLOW relative to a
directory fd, and owners and modes are set on the fd, never by path.
"""

from __future__ import annotations

TRAILER = "ZACHOT-AGENT:"
SMALL_FILE_CAP = 16 << 20  # env files and units: anything bigger is not one

SOURCE = r"""
import errno, grp, hashlib, json, os, pwd, stat, subprocess, sys
T = "ZACHOT-AGENT:"
CHUNK = 1 << 20
CAP = @CAP@
DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

class Refused(Exception):
    def __init__(self, kind, msg):
        Exception.__init__(self, msg)
        self.kind, self.msg = kind, msg

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

def others_write(d):
    # A directory someone other than root can add names to.
    return d.st_uid != 0 or bool(d.st_mode & 0o022)

def may_follow(d, link):
    # Follow a link only where no other user could have planted it.
    if not others_write(d):
        return True
    return d.st_uid == 0 and bool(d.st_mode & stat.S_ISVTX) and link.st_uid == 0

def kind_of(st):
    for test, said in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"),
                       (stat.S_ISBLK, "device"), (stat.S_ISLNK, "link")):
        if test(st.st_mode):
            return said
    return "special file"

def close_all(fds):
    for fd in fds:
        os.close(fd)

def walk(path, last):
    # -> (fd of the final component or None, parent dir fd, parent stat, final name).
    # last: FILE or DIR opens the final component with those flags; None stops at its parent.
    if not path.startswith("/"):
        raise Refused("badpath", path + ": not an absolute path")
    root = os.open("/", DIR)
    stack, todo, hops = [(root, os.fstat(root))], path.split("/"), 0
    try:
        while True:
            todo = [p for p in todo if p not in ("", ".")]
            if not todo:
                raise Refused("badpath", path + ": names no file")
            part = todo.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            fd, st = stack[-1]
            final = not [p for p in todo if p not in ("", ".")]
            if final and last is None:
                stack.pop()
                return None, fd, st, part
            try:
                nfd = os.open(part, last if final else DIR, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                link = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(link.st_mode):
                    raise
                if not may_follow(st, link):
                    who = name_of(pwd.getpwuid, st.st_uid) if st.st_uid else "others"
                    raise Refused("link", "%s: a link at %s in a directory %s can write; "
                                  "not followed" % (path, part, who))
                hops += 1
                if hops > 32:
                    raise Refused("link", path + ": too many levels of links")
                target = os.readlink(part, dir_fd=fd)
                if target.startswith("/"):
                    close_all(f for f, _ in stack[1:])
                    del stack[1:]
                todo = target.split("/") + todo
                continue
            if final:
                stack.pop()
                return nfd, fd, st, part
            stack.append((nfd, os.fstat(nfd)))
    finally:
        close_all(f for f, _ in stack)

def open_file(path, cap=None):
    # -> (fd, stat) of a regular file reached safely; Refused otherwise.
    fd, dfd, dst, name = walk(path, FILE)
    os.close(dfd)
    st = os.fstat(fd)
    why = None
    if not stat.S_ISREG(st.st_mode):
        why = ("notfile", "%s is a %s, not a regular file" % (path, kind_of(st)))
    elif st.st_nlink > 1 and others_write(dst) and st.st_uid != dst.st_uid:
        why = ("hardlink", "%s is a hard link to a file of %s in a directory others can write"
               % (path, name_of(pwd.getpwuid, st.st_uid)))
    elif cap and st.st_size > cap:
        why = ("toobig", "%s is %d bytes, more than the %d MiB a file of this kind may be"
               % (path, st.st_size, cap >> 20))
    if why:
        os.close(fd)
        raise Refused(*why)
    return fd, st

def parent_dir(path):
    fd, dfd, dst, name = walk(path, None)
    return dfd, dst, name

def guarded(fn):
    # One clear trailer for every refusal or OS error; never a traceback.
    def run(*args):
        try:
            return fn(*args)
        except Refused as e:
            fail(e.kind, e.msg)
        except FileNotFoundError:
            fail("missing", "no such file: " + args[0])
        except PermissionError:
            fail("denied", "permission denied: " + args[0])
        except KeyError as e:
            fail("nouser", "no such user or group on the server: %s" % e.args[0])
        except OSError as e:
            where = e.filename if str(e.filename).startswith("/") else args[0]
            fail("oserror", "%s: %s" % (where, e.strerror), code=4)
    return run

def pump(src, out, h, cap=None):
    n = 0
    while True:
        # What is there now, passed on now (read1, flush): a slow producer (tar | zstd of a
        # live log) streams instead of leaving in MiB blocks, the last one after it ends.
        b = src.read1(CHUNK)
        if not b:
            return n
        n += len(b)
        if cap and n > cap:
            raise Refused("toobig", "the file grew past %d MiB while it was read" % (cap >> 20))
        h.update(b)
        out.write(b)
        out.flush()

def op_read(path, cap="0"):
    fd, st = open_file(path, int(cap))
    with os.fdopen(fd, "rb") as f:
        h = hashlib.sha256()
        n = pump(f, sys.stdout.buffer, h, int(cap))
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

def drop_stale_parts(dfd, prefix):
    # A write killed with its connection leaves its temp file; never the real one.
    for name in os.listdir(dfd):
        pid = name[len(prefix):]
        if name.startswith(prefix) and pid.isdigit() and not alive(int(pid)):
            try:
                os.unlink(name, dir_fd=dfd)
            except OSError:
                pass

def ids(owner, group):
    return (pwd.getpwnam(owner).pw_uid if owner else -1,
            grp.getgrnam(group).gr_gid if group else -1)

def create(dfd, name, fill, uid=-1, gid=-1, mode=0o600, times=None):
    # A new file by name in dfd, made through its own fd; removed again if anything fails.
    fd = os.open(name, NEW, 0o600, dir_fd=dfd)
    try:
        with os.fdopen(fd, "wb") as out:
            result = fill(out)
            out.flush()
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            if times:
                os.utime(fd, ns=times)
            os.fsync(fd)
            return result, os.fstat(fd)
    except BaseException:
        try:
            os.unlink(name, dir_fd=dfd)
        except OSError:
            pass
        raise

def op_write(path, mode, owner, group, expect):
    try:
        dfd, dst, name = parent_dir(path)
    except (FileNotFoundError, NotADirectoryError):
        fail("missing", "no such directory: " + (os.path.dirname(path) or "/"))
    prefix = "." + name + ".zachot-part-"
    tmp = prefix + str(os.getpid())
    uid, gid = ids(owner, group)
    try:
        drop_stale_parts(dfd, prefix)
        h = hashlib.sha256()
        _, st = create(dfd, tmp, lambda out: pump(sys.stdin.buffer, out, h), uid, gid, int(mode, 8))
        if h.hexdigest() != expect:
            os.unlink(tmp, dir_fd=dfd)
            fail("checksum", "received bytes do not match the sender's sha256")
        try:
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError:
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.fsync(dfd)
    finally:
        os.close(dfd)
    report(ok=True, sha256=h.hexdigest(), **stat_of(st))

def copy_bytes(fd, out):
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)  # newest_same may have read it already
    with os.fdopen(os.dup(fd), "rb") as src:
        pump(src, out, h, CAP)
    return h.hexdigest()

def mkdir_at(pfd, name):
    # A new 0700 directory at pfd (its owner and mode are set later, on its own fd).
    try:
        os.mkdir(name, 0o700, dir_fd=pfd)
        return True
    except FileExistsError:
        return False

def private_dir(path):
    # backup_dir: root's own 0700 directory, made if absent; anything else is refused.
    pfd, pst, name = parent_dir(path)
    try:
        made = mkdir_at(pfd, name)
        try:
            fd = os.open(name, DIR, dir_fd=pfd)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise Refused("private", "%s is not a directory (a link or a file); it must be a "
                          "root-owned directory (0700): move it away and run again" % path)
    finally:
        os.close(pfd)
    st = os.fstat(fd)
    if made:
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o700)
    elif st.st_uid != 0 or st.st_mode & 0o7777 != 0o700:
        os.close(fd)
        who = name_of(pwd.getpwuid, st.st_uid)
        said = "is owned by " + who if st.st_uid else "has mode %04o" % (st.st_mode & 0o7777)
        raise Refused("private", "%s %s; it must be root-owned 0700: chown root:root %s && "
                      "chmod 0700 %s" % (path, said, path, path))
    return fd

def op_private(path):
    os.close(private_dir(path))
    report(ok=True, sha256="")

def op_unlink(path, *names):
    # Old copies in root's private directory, removed by name at its checked fd.
    dfd = private_dir(path)
    try:
        for name in names:
            if "/" in name or name in (".", ".."):
                raise Refused("badpath", name + ": not a plain file name")
            os.unlink(name, dir_fd=dfd)
    finally:
        os.close(dfd)
    report(ok=True, sha256="", removed=len(names))

def newest_same(dfd, prefix, fd):
    # Is the newest <prefix><digits> copy in dfd byte-identical to the open file?
    names = sorted(n for n in os.listdir(dfd)
                   if n.startswith(prefix) and n[len(prefix):][:1].isdigit())
    if not names:
        return False
    try:
        old = os.open(names[-1], FILE, dir_fd=dfd)
    except OSError:
        return False
    with os.fdopen(old, "rb") as a, os.fdopen(os.dup(fd), "rb") as b:
        os.lseek(b.fileno(), 0, 0)
        while True:
            x, y = a.read(CHUNK), b.read(CHUNK)
            if x != y:
                return False
            if not x:
                return True

def op_copy(src, dst, private="", same_prefix=""):
    # A root copy beside the service user's files, keeping the source's owner and times.
    fd, st = open_file(src, CAP)
    try:
        if private == "1":
            dfd, name = private_dir(os.path.dirname(dst)), os.path.basename(dst)
        else:
            dfd, _, name = parent_dir(dst)
        try:
            if same_prefix and newest_same(dfd, same_prefix, fd):
                report(ok=True, sha256="", copied=False)
                return
            times = (st.st_atime_ns, st.st_mtime_ns)
            # In root's private directory a second copy stamped the same second gets -1..-9:
            # two runs can now finish within the stamp's one-second grain.
            extra = ["%s-%d" % (name, n) for n in range(1, 10)] if private == "1" else []
            names = [name] + extra
            for made in names:
                try:
                    digest, _ = create(dfd, made, lambda out: copy_bytes(fd, out), st.st_uid,
                                       st.st_gid, 0o600, times)
                    break
                except OSError as e:
                    if isinstance(e, FileExistsError) and made != names[-1]:
                        continue
                    e.filename = dst  # the copy failed, not the file copied
                    raise
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(fd)
    report(ok=True, sha256=digest, copied=True, name=made)

def op_own(path, mode, owner, group):
    # chown and chmod through the file's own fd: a link planted at path is refused.
    fd, st = open_file(path)
    try:
        uid, gid = ids(owner, group)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, int(mode, 8))
        st = os.fstat(fd)
    finally:
        os.close(fd)
    report(ok=True, sha256="", **stat_of(st))

def op_mkdir(path, mode, owner, group, fix=""):
    # A missing directory, made at its parent's fd and given its owner through its own fd.
    # fix: an existing one gets them too (install -d), but root's is left as it is: the
    # service user can rename a directory of root's into the name asked for.
    uid, gid = ids(owner, group)
    pfd, _, name = parent_dir(path)
    try:
        made = mkdir_at(pfd, name)
        fd = os.open(name, DIR, dir_fd=pfd)
    finally:
        os.close(pfd)
    try:
        st = os.fstat(fd)
        if made or (fix and (st.st_uid != 0 or uid in (-1, 0))):
            os.fchown(fd, uid, gid)
            os.fchmod(fd, int(mode, 8))
    finally:
        os.close(fd)
    report(ok=True, sha256="", made=made)

def op_digests(path, suffix):
    # sha256, mode and owner of path and of the <name><suffix>* copies beside it.
    dfd, _, name = parent_dir(path)
    try:
        names = [name] + sorted(n for n in os.listdir(dfd) if n.startswith(name + suffix))
    finally:
        os.close(dfd)
    found = {}
    for n in names:
        p = os.path.join(os.path.dirname(path), n)
        try:
            fd, st = open_file(p)
        except (Refused, FileNotFoundError):
            continue
        with os.fdopen(fd, "rb") as f:
            h = hashlib.sha256()
            while True:
                b = f.read(CHUNK)
                if not b:
                    break
                h.update(b)
        found[p] = dict(stat_of(st), sha256=h.hexdigest())
    report(ok=True, sha256="", files=found)

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
    opened = [(p,) + open_file(p, CAP) for p in args[:cut]]
    for pattern in args[cut + 1:]:
        for p in sorted(glob.glob(pattern)):
            try:
                opened.append((p,) + open_file(p, CAP))
            except (Refused, OSError):
                pass  # optional: a link, a FIFO or a huge file there is simply not packed
    h = hashlib.sha256()
    sink = Hashing(sys.stdout.buffer, h)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for p, fd, st in opened:
            with os.fdopen(fd, "rb") as f:
                tar.addfile(tar.gettarinfo(arcname=p.lstrip("/"), fileobj=f), f)
    sys.stdout.buffer.flush()
    report(ok=True, sha256=h.hexdigest(), sent=sink.n, files=len(opened))

op, args = sys.argv[1], sys.argv[2:]
ops = {"read": op_read, "write": op_write, "pack": op_pack, "copy": op_copy, "own": op_own,
       "mkdir": op_mkdir, "private": op_private, "digests": op_digests,
       "unlink": op_unlink,
       "stream": lambda *a: op_stream(list(a))}
guarded(ops[op])(*args)
""".replace("@CAP@", str(SMALL_FILE_CAP))
