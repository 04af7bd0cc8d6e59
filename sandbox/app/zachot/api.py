"""HTTP API (stdlib http.server). Run with `python -m zachot.api`."""

import json
import subprocess
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from zachot import __version__, settings
from zachot.tasks import record_job, redis_client


def running_version() -> str:
    """The deployed commit or tag, as git sees the checkout this process runs from."""
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "describe", "--tags", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__


VERSION = running_version()


def redis_ok() -> bool:
    try:
        return bool(redis_client().ping())
    except Exception:
        return False


class Handler(BaseHTTPRequestHandler):
    server_version = "zachot/" + __version__

    def send_json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            ok = redis_ok()
            status = "ok" if ok else "degraded"
            self.send_json(200 if ok else 503, {"status": status, "redis": ok, "version": VERSION})
        elif self.path.startswith("/jobs/"):
            job_id = self.path.removeprefix("/jobs/")
            try:
                done = bool(redis_client().sismember(settings.DONE_KEY, job_id))
            except Exception:
                self.send_json(503, {"error": "redis unavailable"})
                return
            self.send_json(200, {"id": job_id, "done": done})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/jobs":
            self.send_json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        job_id = str(body.get("id") or uuid.uuid4())
        try:
            record_job.send(job_id)
        except Exception:
            self.send_json(503, {"error": "redis unavailable"})
            return
        self.send_json(202, {"id": job_id})

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {fmt % args}\n")
        sys.stdout.flush()


def main() -> None:
    server = ThreadingHTTPServer((settings.API_HOST, settings.API_PORT), Handler)
    print(f"zachot-api {VERSION} listening on {settings.API_HOST}:{settings.API_PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
