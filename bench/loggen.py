"""The program run inside a box (python3 -c) to write benchmark log files.

Lines look like an API access log with a random 128-bit request id, so the text
compresses about 4x (real logs often compress more; this is the harder case).
`.gz` files are written by gzip level 6, as logrotate's default `compress` does;
`random` files hold os.urandom bytes (already-compressed data). Two processes
share the work, one per core.
"""

SOURCE = r"""
import gzip, json, os, pwd, random, sys
from multiprocessing import Pool

PATHS = ["/api/v1/tasks", "/api/v1/tasks/{id}", "/api/v1/users/{id}", "/health",
         "/api/v1/exams/{id}/submit"]
LEVELS = ["INFO"] * 8 + ["WARNING", "ERROR"]

def blocks(rng):
    t = 1763900000.0
    while True:
        lines = []
        for _ in range(2000):
            t += rng.random() * 0.05
            path = rng.choice(PATHS).replace("{id}", str(rng.getrandbits(20)))
            lines.append("%.3f %s zachot.api request_id=%032x method=GET path=%s status=%d "
                         "duration_ms=%.1f user=%d\n" % (
                t, rng.choice(LEVELS), rng.getrandbits(128), path,
                rng.choice((200, 200, 200, 201, 404, 500)), rng.random() * 300,
                rng.getrandbits(16)))
        yield "".join(lines).encode()

def write(spec):
    path, size, kind, mtime, owner = spec
    rng = random.Random(path)
    with open(path, "wb") as raw:
        if kind == "random":
            while raw.tell() < size:
                raw.write(os.urandom(min(1 << 20, size - raw.tell())))
        else:
            out = raw
            if kind == "gz":
                out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
            for block in blocks(rng):
                out.write(block)
                if raw.tell() >= size:
                    break
            if kind == "gz":
                out.close()
    user = pwd.getpwnam(owner)
    os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(path, 0o644)
    os.utime(path, (mtime, mtime))

specs = json.loads(sys.argv[1])
with Pool(2) as pool:
    pool.map(write, specs, chunksize=1)
"""
